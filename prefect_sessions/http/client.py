"""The one HTTP engine every provider goes through: pacing, 429-aware retries and typed errors.

A provider client builds requests and reads bodies; it never loops, sleeps or classifies a status.
Each request states whether it is safe to replay (``idempotent``), and that single bit decides what
a failure may lead to (see :func:`prefect_sessions.http.retry.is_retryable_status`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx

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
    RetryHint,
)
from prefect_sessions.http.auth import CredentialAuth
from prefect_sessions.http.breaker import BreakerPolicy, CircuitBreaker, failure_kind
from prefect_sessions.http.envelope import GENERIC, Envelope, UnreadableAnswer
from prefect_sessions.http.hints import retry_hint, should_retry_header
from prefect_sessions.http.pacers import Pacers, default_pacers
from prefect_sessions.http.pacing import Pacer
from prefect_sessions.http.pool import use_httpcore2_pool
from prefect_sessions.http.retry import (
    RetryPolicy,
    gave_up_detail,
    is_retryable_status,
    next_wait,
)
from prefect_sessions.http.tally import Tally, count_attempt, count_rate_limited

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
    """Counters of one client, for reports and benchmarks (never per-turn logs). Its attempts and
    429s are the engine's one count (:mod:`prefect_sessions.http.tally`), kept for this client."""

    requests: int = 0
    sent: Tally = field(default_factory=Tally)
    retries: int = 0
    waited_seconds: float = 0.0

    @property
    def attempts(self) -> int:
        """Requests sent, retries included."""
        return self.sent.requests

    @property
    def rate_limited(self) -> int:
        """Of those, the ones answered 429."""
        return self.sent.rate_limited


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
        pacer: the pacer to use; by default the one of this (base URL, credential) in
            ``pacers``.
        pacers: the run's pacer registry (:class:`~prefect_sessions.http.pacers.Pacers`),
            shared by every client of the run; by default the process's, for clients made
            outside a run.
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
        pacers: Pacers | None = None,
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
        self.pacer = pacer or (pacers or default_pacers()).get(
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
            if self._transport is None:
                use_httpcore2_pool(self._client, ssl_context=_ssl_context(), limits=self._limits)
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
        tokens: float = 0.0,
    ) -> httpx.Response:
        """Send a request, retrying what is safe to retry; return the successful response.

        ``json`` sends a JSON body, ``data`` a form (``application/x-www-form-urlencoded``).
        ``tokens`` is what the request is estimated to cost at an endpoint that publishes a
        token quota (a model endpoint): it waits for room for them as for its request slot.

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
        return await self._send(
            client, build, operation, idempotent, auth, stream=False, tokens=tokens
        )

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
        tokens: float = 0.0,
    ) -> AsyncIterator[httpx.Response]:
        """Like :meth:`request`, for a streamed body (SSE); retries end once the headers are in.

        A stream cut after it started raises :class:`OutcomeUnknownError` for a non-idempotent
        request (the provider acted, at least in part) and :class:`ProviderUnavailableError`
        otherwise. Either way the whole call must be repeated by the caller, never resumed.
        """
        client = self._require_open()
        build = self._builder(client, method, path, json, params, headers, idempotent)
        response = await self._send(
            client, build, operation, idempotent, auth, stream=True, tokens=tokens
        )
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
        tokens: float = 0.0,
    ) -> httpx.Response:
        """The retry loop: one attempt after another, until one succeeds or
        :func:`~prefect_sessions.http.retry.next_wait` says to stop."""
        self.stats.requests += 1
        pacer = self._pacer_for(auth)
        waited = 0.0  # between attempts so far, as the budget counts it
        attempt = 1
        while True:
            try:
                return await self._attempt(
                    client,
                    build,
                    pacer,
                    operation,
                    idempotent,
                    auth,
                    attempt,
                    stream=stream,
                    tokens=tokens,
                )
            except ProviderError as error:
                wait = next_wait(
                    self.retry_policy,
                    error,
                    attempt=attempt,
                    waited=waited,
                    provider_down=self.breaker.failing,
                    rand=self._rand,
                )
                if wait is None:
                    if not error.retryable:
                        raise
                    detail = gave_up_detail(
                        self.retry_policy, error, attempt=attempt, waited=waited
                    )
                    raise error.with_attempts(attempt, detail) from error.__cause__
                pause = self.breaker.cut(wait)  # never past when the provider is given up on
                self._retrying(operation, error, attempt, pause)
                await self._sleep(pause)
                waited += wait
                attempt += 1

    async def _attempt(
        self,
        client: httpx.AsyncClient,
        build: Callable[[], httpx.Request],
        pacer: Pacer,
        operation: str,
        idempotent: bool,
        auth: CredentialAuth | None,
        attempt: int,
        *,
        stream: bool,
        tokens: float = 0.0,
    ) -> httpx.Response:
        """One attempt, layered: admission (the circuit breaker), pacing (a pacer slot), the
        send, what the answer teaches the pacer; a failure as the package's error."""
        count_attempt(self.stats.sent)
        probe = await self.breaker.admit()  # before a pacer slot: never hold one waiting here
        async with pacer.slot(tokens=tokens) as grant:
            try:
                response = await client.send(
                    build(), auth=auth or httpx.USE_CLIENT_DEFAULT, stream=stream
                )
            except httpx.TransportError as exc:
                self.breaker.failed(failure_kind(exc), probe)
                raise self._transport_error(
                    exc, operation, idempotent, auth, attempts=attempt
                ) from exc
            except BaseException:
                self.breaker.abandoned(probe)
                raise
            self.breaker.succeeded(probe)
            # The headers are read once, into a plain dict: httpx looks each name up by a scan.
            headers = dict(response.headers.items())
            now = datetime.now(timezone.utc)
            hint = None if response.is_success else retry_hint(headers, now)
            pacer.observe(
                grant,
                status=response.status_code,
                headers=headers,
                retry_after=hint.seconds if hint else None,
                retry_after_resolution=hint.resolution if hint else 0.0,
                now=now,
            )
        if response.is_success:
            return response
        if stream:
            await response.aread()
            await response.aclose()
        if response.status_code == 429:
            count_rate_limited(self.stats.sent)
        raise self._status_error(
            response, operation, idempotent, auth, attempts=attempt, hint=hint, headers=headers
        )

    def _retrying(self, operation: str, error: ProviderError, attempt: int, pause: float) -> None:
        self.stats.retries += 1
        self.stats.waited_seconds += pause
        status = error.status_code
        logger.debug(
            "%s %s: %s, retrying in %.3f s (attempt %d of %d)",
            self.provider,
            operation,
            f"HTTP {status}" if status else type(error).__name__,
            pause,
            attempt + 1,
            self.retry_policy.max_attempts,
        )

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
        hint: RetryHint | None,
        headers: Mapping[str, str],
    ) -> ProviderError:
        status = response.status_code
        body = self.envelope.read_error(response)
        retryable = is_retryable_status(
            status, idempotent=idempotent, should_retry=should_retry_header(headers)
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
