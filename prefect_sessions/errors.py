"""The package's typed errors.

Every provider call raises one of these, so a flow can tell "fix your key" from "slow down" from
"we do not know whether the agent took this turn". Messages name the provider, the operation and the
server's own message. They never contain a secret: the HTTP engine redacts the credentials it holds
from anything the server echoes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar


# Defined here, beside the errors that carry it, so that the errors need nothing from the engine
# (prefect_sessions.http.hints reads it off the headers).
@dataclass(frozen=True)
class RetryHint:
    """The server's answer to "how long until I may send again".

    Attributes:
        seconds: the shortest wait the server allows, never negative.
        resolution: how coarse that value is. ``Retry-After: 2`` is floored by servers such as
            Voiceflow's runtime, so the real wait lies in ``[2, 3)``: resolution 1.0. Jitter is
            spread over it so a fleet told "0" does not come back in the same millisecond.
        source: the header the value came from (for messages, never for logic).
    """

    seconds: float
    resolution: float
    source: str


class PrefectSessionsError(Exception):
    """Base class of every error this package raises on purpose."""


E = TypeVar("E", bound="ProviderError")


class ProviderError(PrefectSessionsError):
    """A provider call failed.

    Attributes:
        provider: the provider's name, e.g. ``"Voiceflow"``.
        operation: what was being done, e.g. ``"interact"``.
        status_code: the HTTP status, or ``None`` when no response arrived.
        server_message: the provider's own explanation, redacted of secrets.
        request_id: the provider's request ID, when it sends one (quote it to their support).
        retryable: whether the engine judged the failure safe to retry.
        hint: when the server said to come back, if it did.
        attempts: how many attempts were made before this error was raised.
    """

    def __init__(
        self,
        *,
        provider: str,
        operation: str,
        status_code: int | None = None,
        server_message: str | None = None,
        request_id: str | None = None,
        retryable: bool = False,
        hint: RetryHint | None = None,
        attempts: int = 1,
        detail: str | None = None,
    ) -> None:
        self.provider = provider
        self.operation = operation
        self.status_code = status_code
        self.server_message = server_message
        self.request_id = request_id
        self.retryable = retryable
        self.hint = hint
        self.attempts = attempts
        self.detail = detail
        super().__init__(self._compose())

    def _compose(self) -> str:
        parts = [f"{self.provider} {self.operation} failed"]
        if self.status_code is not None:
            parts.append(f"HTTP {self.status_code}")
        if self.detail:
            parts.append(self.detail)
        if self.server_message:
            parts.append(f"server said: {self.server_message}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        if self.attempts > 1:
            parts.append(f"after {self.attempts} attempts")
        return ": ".join(parts[:2]) + "".join(f"; {part}" for part in parts[2:])

    def _state(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "operation": self.operation,
            "status_code": self.status_code,
            "server_message": self.server_message,
            "request_id": self.request_id,
            "retryable": self.retryable,
            "hint": self.hint,
            "attempts": self.attempts,
            "detail": self.detail,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not survive the default pickling that Prefect uses for
        # failed states and results; rebuild from the attributes instead.
        return (_rebuild, (type(self), self._state()))

    def with_attempts(self, attempts: int, detail: str | None) -> ProviderError:
        """A copy of this error that records how many attempts were made (and why they stopped)."""
        state = self._state()
        state["attempts"] = attempts
        if detail:
            state["detail"] = f"{state['detail']}; {detail}" if state["detail"] else detail
        clone = _rebuild(type(self), state)
        clone.__cause__ = self.__cause__
        return clone

    def recast(self, kind: type[E], detail: str) -> E:
        """This failure as ``kind``, a subclass that says what it means for this provider (a
        409 that is Vectara's "already running"), with ``detail`` saying what to do."""
        clone = kind(**{**self._state(), "detail": detail})
        clone.__cause__ = self.__cause__
        return clone


def _rebuild(cls: type[ProviderError], state: dict[str, Any]) -> ProviderError:
    # Every subclass's constructor takes exactly the keys of its own _state().
    return cls(**state)


class AuthenticationError(ProviderError):
    """The provider refused the credentials (401) or their permissions (403).

    Check the API key in the credentials block; for Voiceflow interact, the session key may have
    been revoked by a newer session for the same user.
    """


class NotFoundError(ProviderError):
    """The project, agent, session or user does not exist (404)."""


class InvalidRequestError(ProviderError):
    """The provider rejected the request's content (400, 409 or 422).

    Attributes:
        field_errors: the provider's per-field messages, ``{"field": "message"}``.
    """

    field_errors: dict[str, str]

    def __init__(self, *, field_errors: dict[str, str] | None = None, **kwargs: Any) -> None:
        self.field_errors = dict(field_errors or {})
        super().__init__(**kwargs)

    def _compose(self) -> str:
        message = super()._compose()
        if self.field_errors:
            fields = ", ".join(
                f"{name}: {text}" for name, text in sorted(self.field_errors.items())
            )
            message = f"{message}; fields: {fields}"
        return message

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "field_errors": self.field_errors}


class RateLimitedError(ProviderError):
    """The provider kept answering 429, or asked to wait longer than the retry budget allows.

    ``retry_after`` is the wait the server asked for, in seconds, when it said; a caller with more
    patience (a scheduled flow, a Prefect task retry) can come back after that.
    """

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked to wait, if it said."""
        return self.hint.seconds if self.hint else None


class ProviderUnavailableError(ProviderError):
    """The provider failed (5xx), could not be reached, or timed out on a request safe to repeat."""


class OutcomeUnknownError(ProviderError):
    """A request that must not be sent twice was sent, and no answer came back.

    The provider may or may not have acted on it (taken the turn, posted the message). The engine
    does not retry it: reconcile by reading the session's state, or restart the conversation.
    """


class ConfigurationError(PrefectSessionsError, ValueError):
    """A setting or argument is missing or invalid; the message names it and how to fix it.

    Raised before any request is sent, so nothing was done that needs undoing.
    """


class RunStoppedError(PrefectSessionsError):
    """The run stopped before its end because something it depends on went away.

    Conversations that reached a verdict are kept; the others have none, so running again with
    the same run key picks them up. The message is one line naming what went away.
    """


class ProviderDownError(RunStoppedError):
    """Nothing answered at the provider's base URL for long enough that the run gave up on it
    (connections refused, names not resolved, timeouts; no success in between).

    Attributes:
        base_url: where the provider was expected to answer.
    """

    def __init__(self, message: str, *, base_url: str) -> None:
        self.base_url = base_url
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_down, (str(self), self.base_url))


def _rebuild_down(message: str, base_url: str) -> ProviderDownError:
    return ProviderDownError(message, base_url=base_url)
