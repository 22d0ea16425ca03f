"""Credentials on the wire: a secret stays a ``SecretStr`` until the header is built.

httpx's :class:`httpx.Auth` is the seam: the header is added to the outgoing request inside
``auth_flow`` and nowhere else, so neither the client, its repr nor an error ever holds the value.
"""

from __future__ import annotations

import abc
from collections.abc import Generator

import httpx
from pydantic import SecretStr

from prefect_sessions.http.pacing import credential_fingerprint


class CredentialAuth(httpx.Auth, abc.ABC):
    """An httpx auth that the engine can pace by and redact: every credential type derives it."""

    #: The provider counts this credential's calls apart from the client's own key (LiveAvatar's
    #: session tokens), so the engine paces them apart; otherwise a request's credential shares
    #: the client's pacer (Voiceflow's session keys count against the project's key).
    own_budget: bool = False

    @property
    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A non-reversible name of the credential; requests sharing it share one pacer."""

    @abc.abstractmethod
    def secret_values(self) -> tuple[str, ...]:
        """The plain values this auth may send, so the engine can redact them from server text."""


class SecretHeaderAuth(CredentialAuth):
    """Send a secret in one header, raw (Voiceflow, Vectara, LiveAvatar keys) or with a scheme.

    Args:
        header: the header name, e.g. ``"authorization"`` or ``"x-api-key"``.
        secret: the key or token.
        scheme: a prefix such as ``"Bearer"``, or ``None`` for the raw value.
        own_budget: the provider rate-limits this credential on its own (see
            :attr:`CredentialAuth.own_budget`).
    """

    def __init__(
        self,
        header: str,
        secret: SecretStr,
        scheme: str | None = None,
        *,
        own_budget: bool = False,
    ) -> None:
        if not isinstance(secret, SecretStr):
            raise TypeError("secret must be a pydantic SecretStr, never a plain string")
        self.header = header
        self.scheme = scheme
        self._secret = secret
        self.own_budget = own_budget

    @property
    def fingerprint(self) -> str:
        """A non-reversible name of the credential, used to share pacing per key."""
        return credential_fingerprint(self._secret.get_secret_value())

    def secret_values(self) -> tuple[str, ...]:
        """The plain values this auth sends, so the engine can redact them from server text."""
        return (self._secret.get_secret_value(),)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        value = self._secret.get_secret_value()
        request.headers[self.header] = f"{self.scheme} {value}" if self.scheme else value
        yield request

    def __repr__(self) -> str:
        return f"{type(self).__name__}(header={self.header!r}, secret=SecretStr('**********'))"


class BodySecretAuth(CredentialAuth):
    """Secrets that travel in the request body (an OAuth token request's client secret): nothing
    is added to the request, but the engine paces by them and redacts them from server text.

    Args:
        name: what the secrets belong to, e.g. the token URL and client ID (for pacing).
        secrets: the values to redact.
    """

    def __init__(self, name: str, *secrets: SecretStr) -> None:
        if not all(isinstance(secret, SecretStr) for secret in secrets):
            raise TypeError("secrets must be pydantic SecretStr values, never plain strings")
        self._name = name
        self._secrets = secrets

    @property
    def fingerprint(self) -> str:
        return credential_fingerprint(self._name)

    def secret_values(self) -> tuple[str, ...]:
        return tuple(secret.get_secret_value() for secret in self._secrets)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield request

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r}, secrets=SecretStr('**********'))"
