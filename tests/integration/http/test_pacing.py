"""The pacer: exact spacing on a fake clock, cross-loop sharing, and a real fixed-window server."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from prefect_sessions.http import HttpClient, Pacer, SecretHeaderAuth, shared_pacer
from tests.support.fixed_window import FixedWindowServer, serve

ISO_IN = "2026-01-01T00:00:00Z"


def quota(limit: int, remaining: int, reset_seconds: float) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": str(reset_seconds),
    }


async def test_a_configured_rate_spaces_grants_evenly(fake_time):
    pacer = Pacer(10.0, clock=fake_time.clock, sleep=fake_time.sleep)
    times = []
    for _ in range(5):
        await pacer.acquire()
        times.append(fake_time.now)
    gaps = [round(b - a, 9) for a, b in itertools.pairwise(times)]
    assert gaps == [0.1, 0.1, 0.1, 0.1]


async def test_the_rate_is_learned_from_the_published_quota(fake_time):
    pacer = Pacer(clock=fake_time.clock, sleep=fake_time.sleep)
    assert pacer.rate is None
    grant = await pacer.acquire()
    pacer.observe(grant, status=200, headers=quota(20, 19, 1.0))
    assert pacer.rate == pytest.approx(0.95 * 20 / 1.0)
    # The window is the longest reset seen: a later, shorter reset does not raise the rate.
    pacer.observe(await pacer.acquire(), status=200, headers=quota(20, 18, 0.5))
    assert pacer.rate == pytest.approx(19.0)


async def test_remaining_zero_holds_every_request_until_the_reset(fake_time):
    pacer = Pacer(1000.0, clock=fake_time.clock, sleep=fake_time.sleep)
    start = fake_time.now
    pacer.observe(await pacer.acquire(), status=200, headers=quota(1000, 0, 2.5))
    await pacer.acquire()
    assert fake_time.now - start >= 2.5


async def test_a_429_pauses_the_whole_key(fake_time):
    pacer = Pacer(1000.0, clock=fake_time.clock, sleep=fake_time.sleep)
    start = fake_time.now
    pacer.observe(await pacer.acquire(), status=429, headers={}, retry_after=3.0)
    await pacer.acquire()
    assert fake_time.now - start == pytest.approx(3.0)


async def test_until_the_first_answer_only_the_probe_is_in_flight():
    pacer = Pacer()
    probe = await pacer.acquire()
    assert probe.probe
    follower = asyncio.create_task(pacer.acquire())
    await asyncio.sleep(0)  # let the follower reach its wait
    assert not follower.done()
    pacer.observe(probe, status=200, headers={})
    grant = await asyncio.wait_for(follower, timeout=5)
    assert not grant.probe
    assert pacer.rate is None  # no published quota: unpaced


async def test_an_abandoned_probe_hands_the_probe_to_the_next_request():
    pacer = Pacer()
    async with pacer.slot() as first:
        follower = asyncio.create_task(pacer.acquire())
        await asyncio.sleep(0)
        assert not follower.done()
    # The first request got no response (its slot closed unobserved): the follower probes.
    second = await asyncio.wait_for(follower, timeout=5)
    assert first.probe
    assert second.probe


def test_a_pacer_is_shared_across_threads_and_event_loops():
    pacer = Pacer()
    probe_taken = threading.Event()
    results: dict[str, bool] = {}

    def prober() -> None:
        async def run() -> None:
            grant = await pacer.acquire()
            probe_taken.set()
            await asyncio.to_thread(follower_waiting.wait, 5)
            pacer.observe(grant, status=200, headers=quota(100, 99, 1.0))

        asyncio.run(run())

    follower_waiting = threading.Event()

    def follower() -> None:
        async def run() -> None:
            probe_taken.wait(5)
            task = asyncio.ensure_future(pacer.acquire())
            await asyncio.sleep(0)
            results["blocked_while_probing"] = not task.done()
            follower_waiting.set()
            grant = await asyncio.wait_for(task, timeout=5)
            results["granted"] = not grant.probe

        asyncio.run(run())

    threads = [threading.Thread(target=prober), threading.Thread(target=follower)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == {"blocked_while_probing": True, "granted": True}
    assert pacer.rate == pytest.approx(95.0)


def test_shared_pacers_are_per_base_url_and_credential_and_a_rate_only_lowers():
    a = shared_pacer("http://h/", "k1", rate=10)
    assert shared_pacer("http://h", "k1") is a
    assert shared_pacer("http://h", "k2") is not a
    assert shared_pacer("http://other", "k1") is not a
    shared_pacer("http://h", "k1", rate=5)
    assert a.rate == 5
    shared_pacer("http://h", "k1", rate=50)
    assert a.rate == 5


@pytest.fixture(scope="module")
def fixed_window() -> Iterator[tuple[FixedWindowServer, str]]:
    app = FixedWindowServer(limit=25, window_seconds=1.0)
    with serve(app) as url:
        yield app, url


async def test_50_concurrent_requests_over_real_http_stay_under_the_limit(fixed_window):
    server, url = fixed_window
    server.reset()
    auth = SecretHeaderAuth("authorization", SecretStr("real-http-key"))
    async with HttpClient(provider="Test", base_url=url, auth=auth) as client:
        responses = await asyncio.gather(
            *(
                client.request("POST", "/v4/interact", operation="interact", idempotent=False)
                for _ in range(50)
            )
        )
    assert [r.status_code for r in responses] == [200] * 50
    attempts = server.served + server.rejected
    assert server.served == 50
    assert server.rejected / attempts < 0.02, (server.rejected, attempts)
    assert client.stats.attempts == attempts


async def test_the_same_burst_without_the_engine_is_mostly_refused(fixed_window):
    # The control: proves the server really enforces its limit, so the test above could fail.
    server, url = fixed_window
    server.reset()
    async with httpx.AsyncClient(base_url=url, headers={"authorization": "control-key"}) as raw:
        responses = await asyncio.gather(*(raw.post("/v4/interact") for _ in range(50)))
    assert sum(r.status_code == 429 for r in responses) >= 20
