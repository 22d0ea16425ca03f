"""Vectara's OAuth 2.0 client-credentials flow as an ``httpx.Auth``.

The token is fetched on first use, cached per (token URL, client) for the whole process until
shortly before it expires, and fetched again after that, or once when the API answers 401 to a
cached token (revoked, or the clocks disagree). It stays a ``SecretStr`` until the header is built.

It derives the engine's :class:`CredentialAuth` so it plugs into the engine's ``auth`` seam:
the engine redacts :meth:`secret_values` from server text and paces per :attr:`fingerprint`.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from prefect_sessions.errors import AuthenticationError, InvalidRequestError, ProviderError
from prefect_sessions.http import CredentialAuth, HttpClient, RetryPolicy
from prefect_sessions.http.auth import BodySecretAuth
from prefect_sessions.http.pacing import credential_fingerprint
from prefect_sessions.vectara.envelope import ENVELOPE

DEFAULT_TOKEN_URL = "https://auth.vectara.io/oauth2/token"  # noqa: S105 - a URL, not a secret

_OPERATION = "fetch OAuth token"
# Refresh this long before the stated expiry (at most a tenth of the token's life), so a request
# never leaves with a token that dies in flight.
_LEEWAY_SECONDS = 30.0
# The API request that needs the token is retried by its own client; the token request itself
# tries a few times within a short budget, so the two do not multiply into minutes.
_TOKEN_RETRY = RetryPolicy(max_attempts=3, max_wait_seconds=10.0)


@dataclass(frozen=True)
class _Token:
    value: SecretStr
    expires_at: float  # on the auth's monotonic clock; inf when the server gave no lifetime


_tokens: dict[str, _Token] = {}
_tokens_lock = threading.Lock()


def forget_tokens() -> None:
    """Drop every cached OAuth token (tests, or after rotating a client secret)."""
    with _tokens_lock:
        _tokens.clear()


class OAuthClientCredentials(CredentialAuth):
    """``Authorization: Bearer <token>`` from an OAuth 2.0 client-credentials grant.

    Args:
        token_url: the token endpoint, ``https://auth.vectara.io/oauth2/token`` for Vectara's cloud.
        client_id: the app client's ID.
        client_secret: the app client's secret.
        provider: the provider's name for error messages.
        timeout: timeouts of the token request.
        transport: an httpx transport for the token request (the emulator in process, tests).
        clock: monotonic seconds; injected by tests to expire tokens without waiting.
    """

    requires_request_body = True  # a request refused with 401 is sent again with a new token

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        provider: str = "Vectara",
        timeout: httpx.Timeout | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.provider = provider
        self._client_secret = client_secret
        self._timeout = timeout or httpx.Timeout(10.0)
        self._transport = transport
        self._clock = clock
        self._lock: asyncio.Lock | None = None
        identity = f"{token_url}\n{client_id}\n{client_secret.get_secret_value()}"
        self._cache_key = hashlib.sha256(identity.encode("utf-8")).hexdigest()

    @property
    def fingerprint(self) -> str:
        """Pacing is shared per app client, whichever token it currently holds."""
        return credential_fingerprint(f"oauth2\n{self.token_url}\n{self.client_id}")

    def secret_values(self) -> tuple[str, ...]:
        token = self._cached()
        current = (token.value.get_secret_value(),) if token else ()
        return (self._client_secret.get_secret_value(), *current)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(token_url={self.token_url!r}, client_id={self.client_id!r}, "
            "client_secret=SecretStr('**********'))"
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise TypeError(
            "OAuthClientCredentials fetches tokens asynchronously: use httpx.AsyncClient"
        )

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token, fresh = await self._token()
        request.headers["authorization"] = f"Bearer {token.value.get_secret_value()}"
        response = yield request
        if response.status_code == 401 and not fresh:
            # A cached token can die early (revoked, clock skew); a 401 means nothing was done,
            # so one resend with a new token is safe even for a non-idempotent request.
            self._forget(token)
            token, _ = await self._token()
            request.headers["authorization"] = f"Bearer {token.value.get_secret_value()}"
            yield request

    # -- the cache ----------------------------------------------------------------------------

    def _cached(self) -> _Token | None:
        with _tokens_lock:
            token = _tokens.get(self._cache_key)
        return token if token is not None and self._clock() < token.expires_at else None

    def _forget(self, token: _Token) -> None:
        with _tokens_lock:
            if _tokens.get(self._cache_key) is token:
                del _tokens[self._cache_key]

    async def _token(self) -> tuple[_Token, bool]:
        """The cached token, or a new one; ``True`` when it was fetched by this call."""
        token = self._cached()
        if token is not None:
            return token, False
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            # Concurrent requests of this client wait here for the one fetch.
            token = self._cached()
            if token is not None:
                return token, False
            token = await self._fetch()
            with _tokens_lock:
                _tokens[self._cache_key] = token
            return token, True

    # -- the token request --------------------------------------------------------------------

    async def _fetch(self) -> _Token:
        """A new token from the token URL, through the engine: paced per app client, retried
        like any idempotent request (a grant may be asked for again), the secret redacted."""
        url = httpx.URL(self.token_url)
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._client_secret.get_secret_value(),
        }
        secrets = (self._client_secret,)
        http = HttpClient(
            provider=self.provider,
            base_url=str(url.copy_with(path="/", query=None, fragment=None)),
            # Paced apart from the API calls: an API request holds its slot while it waits for
            # this one.
            auth=BodySecretAuth(f"oauth2-token\n{self.token_url}\n{self.client_id}", *secrets),
            timeout=self._timeout,
            transport=_Borrowed(self._transport) if self._transport else None,
            retry=_TOKEN_RETRY,
            headers={"accept": "application/json"},
            envelope=ENVELOPE,
        )
        started = self._clock()
        try:
            async with http:
                payload = await http.request_json(
                    "POST",
                    url.raw_path.decode("ascii"),
                    operation=_OPERATION,
                    idempotent=True,
                    data=form,
                    expect=dict,
                )
        except (AuthenticationError, InvalidRequestError) as exc:
            raise AuthenticationError(
                provider=self.provider,
                operation=_OPERATION,
                status_code=exc.status_code,
                server_message=exc.server_message,
                request_id=exc.request_id,
                detail=(
                    f"the token URL {self.token_url} refused the client credentials: check "
                    "client_id, client_secret and token_url in the VectaraCredentials block"
                ),
            ) from None
        access_token = payload.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise ProviderError(
                provider=self.provider,
                operation=_OPERATION,
                detail=f"the token URL {self.token_url} answered without an access_token",
            )
        lifetime = _lifetime(payload.get("expires_in"))
        leeway = min(_LEEWAY_SECONDS, lifetime / 10.0)
        return _Token(SecretStr(access_token), started + lifetime - leeway)


class _Borrowed(httpx.AsyncBaseTransport):
    """A transport lent by the caller (the emulator in process, tests): used, never closed."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        return None


def _lifetime(expires_in: Any) -> float:
    """Seconds the token lives; without a usable ``expires_in`` it lives until the API says 401."""
    try:
        seconds = float(expires_in)
    except (TypeError, ValueError):
        return float("inf")
    return seconds if seconds > 0 else 0.0
