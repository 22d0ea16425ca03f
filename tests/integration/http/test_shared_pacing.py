"""The Redis-backed pacer: one schedule and one pause for every process that uses a key.

Two pacers on the same key stand for two worker processes. Sleeps are recorded, never slept, so
the checks read the schedule Redis hands out rather than the passing of time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import redis

from prefect_sessions.http.pacers import set_pacer_factory, shared_pacer
from prefect_sessions.http.pacing import Pacer
from prefect_sessions.http.shared_pacing import RedisPacer, redis_pacer_factory

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis() -> redis.Redis | None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        return None
    return client


pytestmark = pytest.mark.skipif(_redis() is None, reason="needs Redis on 127.0.0.1:6379")


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@pytest.fixture
def key() -> Iterator[str]:
    name = f"prefect-sessions-test:{uuid.uuid4().hex}"
    yield name
    client = _redis()
    assert client is not None
    client.delete(f"{name}:next", f"{name}:hold", f"{name}:learned")


def _pair(key: str, rate: float) -> tuple[RedisPacer, Recorder, RedisPacer, Recorder]:
    client = _redis()
    assert client is not None
    one, two = Recorder(), Recorder()
    return (
        RedisPacer(client, key, rate, sleep=one.sleep),
        one,
        RedisPacer(client, key, rate, sleep=two.sleep),
        two,
    )


async def test_two_processes_draw_slots_from_one_schedule(key: str) -> None:
    client = _redis()
    assert client is not None
    waits = Recorder()  # one list, in the order the two pacers were served
    first = RedisPacer(client, key, 10.0, sleep=waits.sleep)
    second = RedisPacer(client, key, 10.0, sleep=waits.sleep)
    for _ in range(5):
        await first.acquire()
        await second.acquire()
    # Ten slots at 10/s were handed out alternately and no sleep really happened: the first
    # slot is now (no sleep), each later one waits longer, the last close to a second.
    assert len(waits.sleeps) == 9
    assert waits.sleeps == sorted(waits.sleeps)
    assert waits.sleeps[-1] > 0.8


async def test_a_429_in_one_process_pauses_the_other(key: str) -> None:
    first, _, second, two = _pair(key, rate=1000.0)
    grant = await first.acquire()
    first.observe(grant, status=429, headers={}, retry_after=5.0)
    await asyncio.gather(*first._pending)
    await second.acquire()
    assert two.sleeps
    assert two.sleeps[-1] > 4.0


async def test_unknown_limit_probes_once_then_stays_unpaced(key: str) -> None:
    first, one, _, _ = _pair(key, rate=None)  # type: ignore[arg-type]
    probe = await first.acquire()
    assert probe.probe
    first.observe(probe, status=200, headers={})
    for _ in range(3):
        assert not (await first.acquire()).probe
    assert one.sleeps == []


async def test_a_rate_learned_from_429s_in_one_process_paces_the_other(key: str) -> None:
    # Nothing published: the first process finds the limit from its 429 and shares it.
    first, _, second, _ = _pair(key, rate=None)  # type: ignore[arg-type]
    for status in (200,) * 6 + (429,):
        grant = await first.acquire()
        first.observe(grant, status=status, headers={})
    await asyncio.gather(*first._pending)
    learned = first.rate
    assert learned is not None
    probe = await second.acquire()  # the second process reads the shared record first
    second.observe(probe, status=200, headers={})
    second.observe(await second.acquire(), status=200, headers={})
    assert second.rate == pytest.approx(learned, rel=0.1)
    # A 429 the second process meets lowers the shared rate for the first one as well.
    grant = await second.acquire()
    second.observe(grant, status=429, headers={})
    await asyncio.gather(*second._pending)
    lowered = second.rate
    assert lowered is not None
    assert lowered < learned
    first._read_at = float("-inf")  # as after REFRESH_SECONDS
    await first.acquire()
    assert first.rate == pytest.approx(lowered, rel=0.1)


def test_factory_makes_every_shared_pacer_a_redis_one() -> None:
    set_pacer_factory(redis_pacer_factory(REDIS_URL, namespace="prefect-sessions-test"))
    try:
        pacer = shared_pacer("http://127.0.0.1:1", "fingerprint")
        assert isinstance(pacer, RedisPacer)
        assert shared_pacer("http://127.0.0.1:1", "fingerprint") is pacer
    finally:
        set_pacer_factory(None)
    assert type(shared_pacer("http://127.0.0.1:1", "fingerprint")) is Pacer


def test_environment_variable_turns_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_SESSIONS_REDIS_URL", REDIS_URL)
    set_pacer_factory(None)
    assert isinstance(shared_pacer("http://127.0.0.1:2", "fingerprint"), RedisPacer)
    monkeypatch.delenv("PREFECT_SESSIONS_REDIS_URL")
    set_pacer_factory(None)
    assert type(shared_pacer("http://127.0.0.1:2", "fingerprint")) is Pacer
