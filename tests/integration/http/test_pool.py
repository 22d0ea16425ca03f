"""httpcore2's pool under the provider clients (prefect_sessions.http.pool), over real sockets on
127.0.0.1: every failure reaches the engine as the same httpx error as on httpx's own pool, a
connection the server closed is never sent on, and only the direct transport is swapped."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpcore
import httpcore2
import httpx
import pytest

from prefect_sessions.errors import OutcomeUnknownError, ProviderUnavailableError
from prefect_sessions.http import HttpClient
from prefect_sessions.http.breaker import failure_kind
from prefect_sessions.http.pool import Httpcore2Pool, use_httpcore2_pool

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class _Server:
    """An HTTP/1.1 server on a free port of 127.0.0.1 that counts connections and answers
    every request on one with ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError):
            await self.answer(reader, writer)
        writer.close()


@contextlib.asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[_Server]:
    server = _Server(answer)
    listening = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    async with listening:
        yield server


async def _read_request(reader: asyncio.StreamReader) -> bool:
    """Read one request's head and body (JSON bodies carry a content-length); False at EOF."""
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return False
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return True


async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError):
        while await _read_request(reader):
            writer.write(OK)
            await writer.drain()


async def answer_once_then_close(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    # The answer does not say "connection: close": the client learns it only from the socket.
    await _read_request(reader)
    writer.write(OK)
    await writer.drain()


async def close_without_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)


async def cut_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial')
    await writer.drain()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    await asyncio.sleep(30)  # outlasts the client's read timeout; cancelled with the server


async def _no_wait(_: float) -> None:
    return None


def _client(url: str, **options: object) -> HttpClient:
    return HttpClient(provider="test", base_url=url, **options)  # type: ignore[arg-type]


async def test_a_provider_client_runs_on_httpcore2s_pool_and_keeps_its_connection() -> None:
    async with serving(keep_alive) as server, _client(server.url) as client:
        _pool(client)
        for _ in range(5):
            assert await client.request_json("POST", "/x", operation="x", idempotent=False) == {}
    assert server.connections == 1


async def test_a_connection_the_server_closed_is_never_sent_on() -> None:
    """The second request must not be written to the closed socket: a non-idempotent one would
    then be 'sent, no answer' and never retried."""
    async with serving(answer_once_then_close) as server, _client(server.url) as client:
        await client.request_json("POST", "/x", operation="x", idempotent=False)
        # Wait (bounded) until the server's FIN is on the pooled connection's socket.
        (pooled,) = _pool(client).connections
        sock = pooled._connection._network_stream.get_extra_info("socket")  # type: ignore[attr-defined]
        readable, _, _ = select.select([sock], [], [], 10.0)
        assert readable, "the server's close never reached the client"
        assert await client.request_json("POST", "/x", operation="x", idempotent=False) == {}
    assert server.connections == 2


def _pool(client: HttpClient) -> httpcore2.AsyncConnectionPool:
    transport = client._require_open()._transport
    assert isinstance(transport, httpx.AsyncHTTPTransport)
    assert isinstance(transport._pool, Httpcore2Pool)
    return transport._pool._pool


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (close_without_answer, httpx.RemoteProtocolError),
        (cut_body, httpx.RemoteProtocolError),
        (never_answer, httpx.ReadTimeout),
    ],
)
async def test_each_failure_is_the_httpx_error_httpxs_own_pool_raises(
    answer: Answer, expected: type[Exception]
) -> None:
    timeout = httpx.Timeout(0.3)
    raised: list[type[Exception]] = []
    async with serving(answer) as server:
        for swap in (False, True):
            async with httpx.AsyncClient(base_url=server.url, timeout=timeout) as client:
                if swap:
                    assert use_httpcore2_pool(
                        client, ssl_context=httpx.create_ssl_context(), limits=httpx.Limits()
                    )
                with pytest.raises(httpx.TransportError) as caught:
                    await client.post("/x", json={})  # reads the body, so a cut one raises
                raised.append(type(caught.value))
    assert raised == [expected, expected]


async def test_a_refused_connection_is_named_and_known_never_sent() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with _client(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(httpx.ConnectError) as caught:
            await client._require_open().post("/x")
        assert failure_kind(caught.value) == "connection refused"
        assert isinstance(caught.value.__cause__, httpcore.ConnectError)


async def test_the_engine_reads_a_sent_interact_with_no_answer_as_outcome_unknown() -> None:
    async with serving(close_without_answer) as server, _client(server.url) as client:
        with pytest.raises(OutcomeUnknownError):
            await client.request_json("POST", "/x", operation="interact", idempotent=False)
    async with (
        serving(close_without_answer) as server,
        _client(server.url, sleep=_no_wait) as client,
    ):
        with pytest.raises(ProviderUnavailableError, match="no response came back"):
            await client.request_json("GET", "/x", operation="state", idempotent=True)


async def test_a_given_transport_and_the_environments_proxies_keep_httpxs_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given = httpx.AsyncHTTPTransport(retries=2)  # its own settings: its own pool stays
    async with _client("http://127.0.0.1:9", transport=given) as client:
        assert client._require_open()._transport is given
        assert isinstance(given._pool, httpcore.AsyncConnectionPool)

    mocked = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(200)))
    assert not use_httpcore2_pool(
        mocked, ssl_context=httpx.create_ssl_context(), limits=httpx.Limits()
    )
    await mocked.aclose()

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    async with httpx.AsyncClient() as client:
        assert use_httpcore2_pool(
            client, ssl_context=httpx.create_ssl_context(), limits=httpx.Limits()
        )
        proxied = [t for t in client._mounts.values() if t is not None]
        assert proxied
        assert all(
            isinstance(t, httpx.AsyncHTTPTransport) and isinstance(t._pool, httpcore.AsyncHTTPProxy)
            for t in proxied
        )
