"""The one HTTP engine every provider goes through: pacing, 429-aware retries and typed errors.

A provider client builds requests and reads bodies; it never loops, sleeps or classifies a status.
Each request states whether it is safe to replay (``idempotent``), and that single bit decides what
a failure may lead to (see :func:`prefect_sessions.http.retry.is_retryable_status`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NoReturn

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from prefect_sessions._version import __version__
from prefect_sessions.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    OutcomeUnknownError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitedError,
)
from prefect_sessions.http.auth import CredentialAuth
from prefect_sessions.http.breaker import BreakerPolicy, CircuitBreaker, failure_kind
from prefect_sessions.http.envelope import GENERIC, Envelope, UnreadableAnswer
from prefect_sessions.http.hints import retry_hint, should_retry_header
from prefect_sessions.http.pacers import shared_pacer
from prefect_sessions.http.pacing import Pacer
from prefect_sessions.http.retry import RetryPolicy, compute_wait, is_retryable_status
from prefect_sessions.http.tally import count_attempt, count_rate_limited

#: Pacers kept for credentials given per request (one per recent LiveAvatar session token).
MAX_REQUEST_PACERS = 1024

logger = logging.getLogger("prefect_sessions.http")

USER_AGENT = f"prefect-sessions/{__version__}"

#: Explicit timeouts: a turn that hangs must fail, not hold a batch slot forever.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=10.0)

# Failures where no byte of the request can have reached the server.
_NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

_REDACTED = "**********"


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~20 ms of CPU per client, and a process may open many (one per
    # task-pair call, per flow run, per shard): all share one context (an SSLContext is safe to
    # share across threads).
    return httpx.create_ssl_context()


#: The request extension that carries the request's idempotency to the answer's reader.
_IDEMPOTENT = "prefect_sessions.idempotent"


def _json_kind(expect: type[Any]) -> str:
    return "object" if expect is dict else "list"


@dataclass
class RequestStats:
    """Counters of one client, for reports and benchmarks (never per-turn logs)."""

    requests: int = 0
    attempts: int = 0
    rate_limited: int = 0
    retries: int = 0
    waited_seconds: float = 0.0


def _error_class(status: int) -> type[ProviderError]:
    if status in (401, 403):
        return AuthenticationError
    if status == 404:
        return NotFoundError
    if status in (400, 409, 422):
        return InvalidRequestError
    if status == 429:
        return RateLimitedError
    if status >= 500 or status == 408:
        return ProviderUnavailableError
    return ProviderError


def _validated_base_url(base_url: str) -> httpx.URL:
    fix = "give an http(s) URL such as https://api.example.com"
    try:
        url = httpx.URL(base_url)
    except (TypeError, httpx.InvalidURL) as exc:
        raise ConfigurationError(f"base_url is not a valid URL: {fix}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"base_url must start with http:// or https://: {fix}")
    if url.userinfo:
        raise ConfigurationError(
            "base_url must not carry a user name or password: put credentials in the block's "
            "secret fields instead"
        )
    return url


class HttpClient:
    """An ``httpx.AsyncClient`` for one provider and one credential, used as a context manager.

    Args:
        provider: the provider's name for messages, e.g. ``"Voiceflow"``.
        base_url: where the API lives; override it for private clouds or the local emulator.
        auth: the credential sent on every request unless a request brings its own.
        rate: requests per second to stay under, if known; the pacer also learns it from the
            server's ``X-RateLimit-*`` headers.
        retry: the retry policy.
        timeout: connect/read/write/pool timeouts.
        transport: an httpx transport (an ASGI app in process, a mock in unit tests).
        sleep: the coroutine used to wait between attempts (injected by tests).
        rand: a ``[0, 1)`` random source for jitter (injected by tests).
        pacer: the pacer to use; by default the one shared by every client of this
            (base URL, credential) in the process.
        max_share: use at most this share of the key's limit (published or learned), leaving
            the rest to other users of the key, such as production traffic.
        breaker: when a provider that stopped answering counts as gone (see
            :mod:`prefect_sessions.http.breaker`); then requests raise ``ProviderDownError``.
            While nothing answers, the breaker, not ``retry.max_attempts``, decides when a
            request stops retrying, so no conversation gets a verdict from an outage.

    Example:
        ```python
        async with HttpClient(provider="Voiceflow", base_url=url, auth=auth) as http:
            response = await http.request(
                "POST", "/v4/interact", operation="interact", idempotent=False, json=body
            )
        ```
    """

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        auth: CredentialAuth | None = None,
        rate: float | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        rand: Callable[[], float] | None = None,
        pacer: Pacer | None = None,
        max_connections: int = 100,
        max_share: float = 1.0,
        breaker: BreakerPolicy | CircuitBreaker | None = None,
        envelope: Envelope | None = None,
    ) -> None:
        if rate is not None and not rate > 0:
            raise ConfigurationError("rate must be a positive number of requests per second")
        if not 0 < max_share <= 1:
            raise ConfigurationError(
                "max_share must lie in (0, 1]: the share of the key's limit to use, e.g. 0.5"
            )
        self.provider = provider
        #: How this provider's answers read (its error bodies, its success bodies).
        self.envelope: Envelope = envelope or GENERIC
        self.base_url = _validated_base_url(base_url)
        self.retry_policy = retry or RetryPolicy()
        self.timeout = timeout or DEFAULT_TIMEOUT
        self.stats = RequestStats()
        self._auth = auth
        self._headers = {"user-agent": USER_AGENT, **dict(headers or {})}
        self._transport = transport
        self._sleep = sleep or asyncio.sleep
        self._rand = rand or random.random
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        fingerprint = auth.fingerprint if auth else "anonymous"
        self.pacer = pacer or shared_pacer(
            str(self.base_url), fingerprint, rate, max_share=max_share
        )
        self.breaker = (
            breaker
            if isinstance(breaker, CircuitBreaker)
            else CircuitBreaker(str(self.base_url), breaker, sleep=self._sleep)
        )
        self._client: httpx.AsyncClient | None = None
        self._closed = False
        self._request_pacers: OrderedDict[str, Pacer] = OrderedDict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider!r}, base_url='{self.base_url}')"

    async def __aenter__(self) -> HttpClient:
        if self._closed:
            raise RuntimeError(
                f"this {self.provider} client is closed and cannot be reused: "
                "get a new one from the credentials block"
            )
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                auth=self._auth,
                headers=self._headers,
                timeout=self.timeout,
                transport=self._transport,
                verify=_ssl_context(),
                limits=self._limits,
                follow_redirects=False,
            )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        self._closed = True
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _require_open(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError(
                f"use the {self.provider} client inside 'async with', e.g. "
                "'async with credentials.get_client() as client:'"
            )
        return self._client

    # -- requests -------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        idempotent: bool,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: CredentialAuth | None = None,
    ) -> httpx.Response:
        """Send a request, retrying what is safe to retry; return the successful response.

        ``json`` sends a JSON body, ``data`` a form (``application/x-www-form-urlencoded``).

        Raises:
            AuthenticationError: the provider refused the credentials (401, 403).
            NotFoundError: 404.
            InvalidRequestError: the provider refused the request as written (400, 409, 422).
            RateLimitedError: 429 beyond the retry budget.
            ProviderUnavailableError: no answer, or 5xx, beyond the retry budget.
            OutcomeUnknownError: a request that is not idempotent may have been acted on.
            ProviderError: any other failure.
        """
        client = self._require_open()
        build = self._builder(client, method, path, json, params, headers, idempotent, data)
        return await self._send(client, build, operation, idempotent, auth, stream=False)

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        idempotent: bool,
        expect: type[dict[str, Any]] | type[list[Any]] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: CredentialAuth | None = None,
    ) -> Any:
        """:meth:`request`, then the answer's data as the provider's envelope reads it
        (:meth:`read_json`).

        Raises:
            ProviderError: what :meth:`request` raises, and what :meth:`read_json` raises for
                an unreadable answer.
        """
        response = await self.request(
            method,
            path,
            operation=operation,
            idempotent=idempotent,
            json=json,
            data=data,
            params=params,
            headers=headers,
            auth=auth,
        )
        return self.read_json(response, operation, expect=expect)

    def read_json(
        self,
        response: httpx.Response,
        operation: str,
        *,
        expect: type[dict[str, Any]] | type[list[Any]] | None = None,
    ) -> Any:
        """The data of a successful answer, as the provider's envelope reads it.

        Raises:
            OutcomeUnknownError: the answer to a request that is not idempotent could not be
                read: the provider may have acted on it (a conversation restarts; the request
                is never sent again as it was).
            ProviderUnavailableError: the answer to an idempotent request could not be read;
                it is retryable (safe to send again), and a conversation restarts.
        """
        try:
            data = self.envelope.read_success(response)
        except UnreadableAnswer as exc:
            raise self.unreadable(response, operation, exc.why) from None
        if expect is not None and not isinstance(data, expect):
            raise self.unreadable(response, operation, f"expected a JSON {_json_kind(expect)}")
        return data

    def unreadable(self, response: httpx.Response, operation: str, why: str) -> ProviderError:
        """The error for an answer that arrived but could not be read: what it means follows
        from the request's idempotency (:meth:`read_json`), the same for every provider."""
        detail = f"the answer could not be read: {self.redact(why)}"
        common: dict[str, Any] = {
            "provider": self.provider,
            "operation": operation,
            "status_code": response.status_code,
        }
        if response.request.extensions.get(_IDEMPOTENT, False):
            # Safe to send again: a conversation starts over rather than ending errored.
            return ProviderUnavailableError(retryable=True, detail=detail, **common)
        return OutcomeUnknownError(detail=detail, **common)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        idempotent: bool,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: CredentialAuth | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """Like :meth:`request`, for a streamed body (SSE); retries end once the headers are in.

        A stream cut after it started raises :class:`OutcomeUnknownError` for a non-idempotent
        request (the provider acted, at least in part) and :class:`ProviderUnavailableError`
        otherwise. Either way the whole call must be repeated by the caller, never resumed.
        """
        client = self._require_open()
        build = self._builder(client, method, path, json, params, headers, idempotent)
        response = await self._send(client, build, operation, idempotent, auth, stream=True)
        try:
            yield response
        except httpx.TransportError as exc:
            raise self._transport_error(
                exc, operation, idempotent, auth, attempts=1, mid_stream=True
            ) from exc
        finally:
            await response.aclose()

    def _builder(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        json: Any,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        idempotent: bool,
        data: Mapping[str, str] | None = None,
    ) -> Callable[[], httpx.Request]:
        def build() -> httpx.Request:
            return client.build_request(
                method,
                path,
                json=json,
                data=dict(data) if data else None,
                params=dict(params) if params else None,
                headers=headers,
                # Read back by unreadable(): what a garbled answer means depends on it.
                extensions={_IDEMPOTENT: idempotent},
            )

        return build

    def _pacer_for(self, auth: CredentialAuth | None) -> Pacer:
        """The pacer of a request: the client's, or for a credential the provider counts apart
        (``own_budget``: a LiveAvatar session token) one of its own. Those are kept for the most
        recent sessions only: each has a few calls."""
        if auth is None or auth is self._auth or not auth.own_budget:
            return self.pacer
        key = auth.fingerprint
        pacer = self._request_pacers.pop(key, None) or Pacer()
        self._request_pacers[key] = pacer
        if len(self._request_pacers) > MAX_REQUEST_PACERS:
            self._request_pacers.popitem(last=False)
        return pacer

    async def _send(
        self,
        client: httpx.AsyncClient,
        build: Callable[[], httpx.Request],
        operation: str,
        idempotent: bool,
        auth: CredentialAuth | None,
        *,
        stream: bool,
    ) -> httpx.Response:
        self.stats.requests += 1
        attempts = 0
        pacer = self._pacer_for(auth)

        async def attempt() -> httpx.Response:
            nonlocal attempts
            attempts += 1
            self.stats.attempts += 1
            count_attempt()
            probe = await self.breaker.admit()  # before a pacer slot: never hold one waiting here
            async with pacer.slot() as grant:
                try:
                    response = await client.send(
                        build(), auth=auth or httpx.USE_CLIENT_DEFAULT, stream=stream
                    )
                except httpx.TransportError as exc:
                    self.breaker.failed(failure_kind(exc), probe)
                    raise self._transport_error(
                        exc, operation, idempotent, auth, attempts=attempts
                    ) from exc
                except BaseException:
                    self.breaker.abandoned(probe)
                    raise
                self.breaker.succeeded(probe)
                hint = retry_hint(response.headers, datetime.now(timezone.utc))
                pacer.observe(
                    grant,
                    status=response.status_code,
                    headers=response.headers,
                    retry_after=hint.seconds if hint else None,
                    retry_after_resolution=hint.resolution if hint else 0.0,
                )
            if response.is_success:
                return response
            if stream:
                await response.aread()
                await response.aclose()
            if response.status_code == 429:
                self.stats.rate_limited += 1
                count_rate_limited()
            raise self._status_error(response, operation, idempotent, auth, attempts=attempts)

        # Most requests succeed at once, and tenacity's loop costs about as much CPU per request
        # as the rest of the engine's bookkeeping: enter it only after a retryable failure.
        try:
            return await attempt()
        except ProviderError as exc:
            if not exc.retryable:
                raise
            first_failure: ProviderError | None = exc

        async def replay_then_attempt() -> httpx.Response:
            # tenacity's attempt 1 is the failure above, replayed without sending, so attempt
            # numbers, waits and the retry budget come out as if tenacity had sent it.
            nonlocal first_failure
            if first_failure is not None:
                failure, first_failure = first_failure, None
                raise failure
            return await attempt()

        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, ProviderError) and exc.retryable),
            wait=self._wait,
            stop=self._stop,
            sleep=lambda seconds: self._sleep(self.breaker.cut(seconds)),
            before_sleep=lambda state: self._before_sleep(state, operation),
            retry_error_callback=self._give_up,
            reraise=True,
        )
        response: httpx.Response = await retrying(replay_then_attempt)
        return response

    # -- retry decisions (tenacity callbacks) ---------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        hint = error.hint if isinstance(error, ProviderError) else None
        wait = compute_wait(
            self.retry_policy,
            attempt=state.attempt_number,
            hint=hint,
            budget_left=self.retry_policy.max_wait_seconds - state.idle_for,
            rand=self._rand,
        )
        return math.inf if wait is None else wait

    def _stop(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        unanswered = isinstance(error, ProviderUnavailableError) and error.status_code is None
        if unanswered and self.breaker.failing:
            # Nothing has answered since this streak began: the breaker decides when to stop
            # (ProviderDownError), so no conversation gets a verdict from an outage.
            return False
        if state.attempt_number >= self.retry_policy.max_attempts:
            return True
        return state.idle_for + state.upcoming_sleep > self.retry_policy.max_wait_seconds

    def _before_sleep(self, state: RetryCallState, operation: str) -> None:
        self.stats.retries += 1
        self.stats.waited_seconds += state.upcoming_sleep
        error = state.outcome.exception() if state.outcome else None
        status = getattr(error, "status_code", None)
        logger.debug(
            "%s %s: %s, retrying in %.3f s (attempt %d of %d)",
            self.provider,
            operation,
            f"HTTP {status}" if status else type(error).__name__,
            state.upcoming_sleep,
            state.attempt_number + 1,
            self.retry_policy.max_attempts,
        )

    def _give_up(self, state: RetryCallState) -> NoReturn:
        error = state.outcome.exception() if state.outcome else None
        if not isinstance(error, ProviderError):  # pragma: no cover - only ProviderError retries
            raise RuntimeError("retry stopped without a provider error") from error
        policy = self.retry_policy
        budget_left = max(0.0, policy.max_wait_seconds - state.idle_for)
        if error.hint is not None and error.hint.seconds > budget_left:
            detail = (
                f"the server asked to wait {error.hint.seconds:.1f} s ({error.hint.source}) but "
                f"only {budget_left:.1f} s of the {policy.max_wait_seconds:g} s retry budget was "
                "left; not retrying early"
            )
        elif state.attempt_number >= policy.max_attempts:
            detail = None  # the message already ends "after N attempts"
        else:
            detail = f"gave up: the {policy.max_wait_seconds:g} s retry budget is spent"
        raise error.with_attempts(state.attempt_number, detail) from error.__cause__

    # -- error construction ---------------------------------------------------------------------

    def redact(self, text: str, auth: CredentialAuth | None = None) -> str:
        """``text`` with every secret of this client (and of ``auth``) masked; for provider text
        that never passes through the engine's own errors (e.g. an error inside a 2xx envelope)."""
        for holder in (self._auth, auth):
            if holder is None:
                continue
            for secret in holder.secret_values():
                if secret:
                    text = text.replace(secret, _REDACTED)
        return text

    def _status_error(
        self,
        response: httpx.Response,
        operation: str,
        idempotent: bool,
        auth: CredentialAuth | None,
        *,
        attempts: int,
    ) -> ProviderError:
        status = response.status_code
        body = self.envelope.read_error(response)
        hint = retry_hint(response.headers, datetime.now(timezone.utc))
        retryable = is_retryable_status(
            status, idempotent=idempotent, should_retry=should_retry_header(response.headers)
        )
        common: dict[str, Any] = {
            "provider": self.provider,
            "operation": operation,
            "status_code": status,
            "server_message": self.redact(body.message, auth) if body.message else None,
            "request_id": body.request_id,
            "retryable": retryable,
            "hint": hint if status in (429, 503) or retryable else None,
            "attempts": attempts,
        }
        error_class = _error_class(status)
        if error_class is InvalidRequestError:
            fields = {key: self.redact(value, auth) for key, value in body.field_errors.items()}
            return InvalidRequestError(field_errors=fields, **common)
        if error_class is ProviderUnavailableError and not idempotent and not retryable:
            common["detail"] = "not retried: the provider may have acted on this request"
        return error_class(**common)

    def _transport_error(
        self,
        exc: httpx.TransportError,
        operation: str,
        idempotent: bool,
        auth: CredentialAuth | None,
        *,
        attempts: int,
        mid_stream: bool = False,
    ) -> ProviderError:
        cause = type(exc).__name__
        said = self.redact(str(exc), auth)
        reason = f"{cause}: {said}" if said else cause
        common: dict[str, Any] = {
            "provider": self.provider,
            "operation": operation,
            "attempts": attempts,
        }
        if isinstance(exc, _NOTHING_SENT) and not mid_stream:
            return ProviderUnavailableError(
                detail=f"could not send the request ({reason})", retryable=True, **common
            )
        if isinstance(exc, httpx.UnsupportedProtocol):
            return ProviderError(detail=f"unsupported URL ({reason})", **common)
        where = "the response stream was cut" if mid_stream else "no response came back"
        if idempotent:
            return ProviderUnavailableError(
                detail=f"{where} ({reason})", retryable=not mid_stream, **common
            )
        return OutcomeUnknownError(
            detail=(
                f"the request was sent but {where} ({reason}); it was not sent again because "
                "the provider may have acted on it"
            ),
            **common,
        )
