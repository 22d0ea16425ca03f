"""The circuit breaker: a provider that stopped answering stops a run within a bounded time, and one
that comes back in time loses nothing (virtual clock; real sockets for how a failure is named)."""

from __future__ import annotations

import asyncio
import pickle
import socket

import httpx
import pytest

from prefect_sessions.errors import ProviderDownError, RunStoppedError
from prefect_sessions.http import BreakerPolicy, CircuitBreaker, HttpClient, RetryPolicy
from prefect_sessions.http.breaker import failure_kind
from tests.conftest import BASE_URL, FakeTime

POLICY = BreakerPolicy(open_after=10, probe_every=2, give_up_after=30)


def breaker(fake_time: FakeTime) -> CircuitBreaker:
    return CircuitBreaker(BASE_URL, POLICY, clock=fake_time.clock, sleep=fake_time.sleep)


async def test_a_success_at_any_time_keeps_it_closed(fake_time):
    b = breaker(fake_time)
    b.failed("connection refused")
    fake_time.now += 9
    b.succeeded()
    fake_time.now += 25
    assert b.state == "closed"
    assert await b.admit() is False


async def test_after_open_after_seconds_of_failures_only_one_probe_goes_out(fake_time):
    b = breaker(fake_time)
    b.failed("connection refused")
    fake_time.now += 10
    assert b.state == "open"
    assert await b.admit() is True  # the probe
    # While the probe is out nobody else goes: on the fake clock the next request waits until the
    # provider is given up on (the probe never ended), and then fails.
    with pytest.raises(ProviderDownError):
        await b.admit()
    assert fake_time.now == pytest.approx(1_000 + 30)


async def test_a_probe_that_succeeds_lets_the_waiting_requests_go_on(fake_time):
    b = CircuitBreaker(BASE_URL, POLICY, clock=fake_time.clock)  # waits on real time
    b.failed("connection refused")
    fake_time.now += 10
    assert await b.admit() is True
    waiter = asyncio.ensure_future(b.admit())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    b.succeeded(probe=True)
    assert await asyncio.wait_for(waiter, timeout=1) is False
    assert b.state == "closed"


async def test_nothing_answering_for_give_up_after_raises_a_one_line_error(fake_time):
    b = breaker(fake_time)
    b.failed("connection refused")
    for _ in range(4):
        fake_time.now += 5
        b.failed("connection refused")
    fake_time.now += 10
    assert b.state == "down"
    with pytest.raises(ProviderDownError) as raised:
        await b.admit()
    message = str(raised.value)
    assert BASE_URL in message
    assert "connection refused" in message
    assert "30 s" in message
    assert "\n" not in message
    assert isinstance(raised.value, RunStoppedError)
    assert raised.value.base_url == BASE_URL
    copy = pickle.loads(pickle.dumps(raised.value))  # Prefect keeps it in a Failed state
    assert str(copy) == message
    assert copy.base_url == BASE_URL


async def test_a_wait_between_retries_ends_when_the_provider_is_given_up(fake_time):
    b = breaker(fake_time)
    assert b.cut(8.0) == 8.0
    b.failed("timed out")
    fake_time.now += 27
    assert b.cut(8.0) == pytest.approx(3.0)


def test_failures_that_prove_nothing_answered_are_named():
    refused = httpx.ConnectError("All connection attempts failed")
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    unresolved = httpx.ConnectError("x")
    unresolved.__cause__ = socket.gaierror(-2, "Name or service not known")
    assert failure_kind(refused) == "connection refused"
    assert failure_kind(unresolved) == "name not resolved"
    assert failure_kind(httpx.ConnectTimeout("slow")) == "timed out"
    assert failure_kind(httpx.ReadTimeout("slow")) == "timed out"
    # A cut connection may have been answered: it does not count.
    assert failure_kind(httpx.RemoteProtocolError("peer closed")) is None


def test_give_up_after_cannot_be_shorter_than_open_after():
    with pytest.raises(ValueError, match="give_up_after"):
        BreakerPolicy(open_after=20, give_up_after=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_closed_port_stops_requests_with_provider_down_not_a_verdict():
    """Real sockets: a port nobody listens on, a short policy. Requests keep retrying past
    max_attempts while nothing answers, then all raise ProviderDownError together."""
    url = f"http://127.0.0.1:{free_port()}"
    policy = BreakerPolicy(open_after=0.3, probe_every=0.1, give_up_after=1.0)
    client = HttpClient(
        provider="Voiceflow",
        base_url=url,
        breaker=policy,
        retry=RetryPolicy(max_attempts=2, backoff_base_seconds=0.05, backoff_max_seconds=0.1),
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with client:
        calls = [
            client.request("GET", "/state", operation="get state", idempotent=True)
            for _ in range(5)
        ]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    elapsed = loop.time() - started
    assert all(isinstance(o, ProviderDownError) for o in outcomes), outcomes
    assert "connection refused" in str(outcomes[0])
    assert url in str(outcomes[0])
    assert elapsed >= 1.0  # the breaker, not max_attempts, ended the retries
    assert client.stats.attempts > 5 * 2  # retried past max_attempts while the breaker decided


class Watched(CircuitBreaker):
    """A breaker that tells the test when it opened."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.opened = asyncio.Event()

    async def admit(self) -> bool:
        if self.state == "open":
            self.opened.set()
        return await super().admit()


async def test_a_provider_that_comes_back_in_time_loses_nothing():
    """Real sockets: the port refuses, then a server starts listening on it before give-up."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    policy = BreakerPolicy(open_after=0.3, probe_every=0.1, give_up_after=5.0)
    watched = Watched(url, policy)
    client = HttpClient(
        provider="Voiceflow",
        base_url=url,
        breaker=watched,
        retry=RetryPolicy(max_attempts=2, backoff_base_seconds=0.05, backoff_max_seconds=0.1),
    )

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}"
        )
        await writer.drain()
        writer.close()

    async with client:
        calls = [
            asyncio.ensure_future(
                client.request("GET", "/state", operation="get state", idempotent=True)
            )
            for _ in range(5)
        ]
        await asyncio.wait_for(watched.opened.wait(), timeout=5)
        server = await asyncio.start_server(answer, "127.0.0.1", port)
        async with server:
            responses = await asyncio.gather(*calls)
    assert [r.status_code for r in responses] == [200] * 5
    assert client.breaker.state == "closed"
