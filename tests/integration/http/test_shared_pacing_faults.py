"""Redis going away under shared pacing: refused at start with one line, ridden through mid-run.

A Redis server of the test's own (``redis-server`` on a free loopback port) is stopped and started
again, as an operator or a crash would.
"""

from __future__ import annotations

import logging
import shutil
import uuid

import pytest
import redis

from prefect_sessions.errors import ConfigurationError
from prefect_sessions.http import shared_pacing
from prefect_sessions.http.shared_pacing import REDIS_URL_ENV, RedisPacer, check_shared_pacing
from tests.support.own_redis import OwnRedis, free_port

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server (make install sets it up)"
)


def test_an_unreachable_redis_is_refused_naming_the_variable_and_never_the_password():
    url = f"redis://:s3cret-pass@127.0.0.1:{free_port()}/0"
    with pytest.raises(ConfigurationError) as raised:
        check_shared_pacing({REDIS_URL_ENV: url})
    message = str(raised.value)
    assert REDIS_URL_ENV in message
    assert "s3cret-pass" not in message
    assert ":***@127.0.0.1" in message
    assert "unset" in message
    assert "\n" not in message


def test_no_variable_or_a_live_redis_passes(own_redis: OwnRedis):
    check_shared_pacing({})
    check_shared_pacing({REDIS_URL_ENV: own_redis.url})


async def test_redis_dropping_mid_run_falls_back_then_returns(
    own_redis: OwnRedis, monkeypatch, caplog
):
    monkeypatch.setattr(shared_pacing, "FALLBACK_RETRY_SECONDS", 0.0)  # retry Redis at once
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    client = redis.Redis.from_url(own_redis.url, socket_connect_timeout=1, socket_timeout=1)
    pacer = RedisPacer(client, f"test:{uuid.uuid4().hex}", 20.0, sleep=record, where="Redis X")
    caplog.set_level(logging.WARNING, logger="prefect_sessions.http")

    async def send(times: int) -> None:
        for _ in range(times):
            grant = await pacer.acquire()
            pacer.observe(grant, status=200, headers={})

    await send(3)
    assert pacer._fallback_until is None
    own_redis.stop()
    await send(5)  # no request fails: pacing goes on in this process
    assert pacer._fallback_until is not None
    # Every process sharing the key now paces alone: each takes a conservative share.
    assert pacer.rate == pytest.approx(20.0 * shared_pacing.FALLBACK_SHARE)
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1  # the drop is told once
    assert "Redis X is unreachable" in warnings[0]

    own_redis.start()
    await send(2)
    assert pacer._fallback_until is None
    assert pacer.rate == pytest.approx(20.0)
    assert any("answers again" in r.getMessage() for r in caplog.records)
