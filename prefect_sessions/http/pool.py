"""The connection pool under every provider client: httpcore2's, inside httpx's own transport.

httpcore 1.0's pool re-checks every pooled connection (a ``poll`` and a ``getpeername`` each, and
an idle count rebuilt per connection) whenever a request is assigned or released
(encode/httpx#3215, not fixed there). At a batch's speed, 16 connections, that was a third of the
client's CPU. httpcore2, the maintained fork of httpcore (Pydantic's, the pool under openai's own
client), assigns in one pass and checks only the idle connection it hands out; it still never
sends on a connection the server has closed.

Only the pool is swapped. httpx's transport still builds each request, reads each response and
maps each error, and the proxies httpx takes from the environment keep their own transports.
httpcore2's errors are raised as the httpcore errors they mirror, so every failure reaches the
engine as the same ``httpx`` exception as before (what decides "never sent" against "may have
acted"). Where httpx's transport is not the shape this expects, its own pool is kept.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import contextmanager
from types import TracebackType

import httpcore
import httpcore2
import httpx

#: httpcore2's errors and the httpcore errors httpx maps: the same names, the same hierarchy.
_MIRRORED: dict[type[Exception], type[Exception]] = {
    getattr(httpcore2, name): getattr(httpcore, name)
    for name in (
        "ConnectError",
        "ConnectTimeout",
        "LocalProtocolError",
        "NetworkError",
        "PoolTimeout",
        "ProtocolError",
        "ProxyError",
        "ReadError",
        "ReadTimeout",
        "RemoteProtocolError",
        "TimeoutException",
        "UnsupportedProtocol",
        "WriteError",
        "WriteTimeout",
    )
}


@contextmanager
def _as_httpcore_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for kind in type(exc).__mro__:
            mirror = _MIRRORED.get(kind)
            if mirror is not None:
                # Chained, so the socket error underneath (refused, unresolved) is still found.
                raise mirror(*exc.args) from exc
        raise


class _Body(AsyncIterable[bytes]):
    """A response body read from httpcore2, its errors raised as httpcore's."""

    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpcore_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        # Closing the body is what hands its connection back to the pool.
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with _as_httpcore_errors():
                await close()


class Httpcore2Pool:
    """httpcore2's connection pool, speaking httpcore's request, response and errors."""

    def __init__(self, pool: httpcore2.AsyncConnectionPool) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        url = request.url
        with _as_httpcore_errors():
            response = await self._pool.handle_async_request(
                httpcore2.Request(
                    method=request.method,
                    url=httpcore2.URL(
                        scheme=url.scheme, host=url.host, port=url.port, target=url.target
                    ),
                    headers=request.headers,
                    content=request.stream,
                    extensions=request.extensions,
                )
            )
        assert isinstance(response.stream, AsyncIterable)  # an async pool's body is async
        return httpcore.Response(
            status=response.status,
            headers=response.headers,
            content=_Body(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        with _as_httpcore_errors():
            await self._pool.aclose()

    async def __aenter__(self) -> Httpcore2Pool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()


def use_httpcore2_pool(
    client: httpx.AsyncClient, *, ssl_context: ssl.SSLContext, limits: httpx.Limits
) -> bool:
    """Give ``client``'s direct transport httpcore2's pool (same TLS context and limits); whether
    it did. Only for a client whose transport httpx built itself: a transport a caller built
    carries settings of its own (retries, a local address) that the new pool would drop. A
    proxied transport, or an httpx of another shape, keeps httpx's own pool."""
    transport = getattr(client, "_transport", None)
    if type(transport) is not httpx.AsyncHTTPTransport:
        return False
    if type(getattr(transport, "_pool", None)) is not httpcore.AsyncConnectionPool:
        return False
    transport._pool = Httpcore2Pool(  # type: ignore[assignment]
        httpcore2.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
        )
    )
    return True
