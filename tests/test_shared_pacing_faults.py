"""Redis going away under shared pacing: refused at start with one line, ridden through mid-run.

A Redis server of the test's own (``redis-server`` on a free loopback port) is stopped and started
again, as an operator or a crash would.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from prefect_sessions.errors import ConfigurationError
from prefect_sessions.http import shared_pacing
from prefect_sessions.http.shared_pacing import REDIS_URL_ENV, RedisPacer, check_shared_pacing

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server (make install sets it up)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnRedis:
    """A redis-server on a free port, started and stopped on demand."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""],
            cwd=self._directory,
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        # redis-server has no readiness signal but its port: ping until it answers.
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self._process.poll() is not None:
                    raise RuntimeError("redis-server exited") from None
                self._process_wait(0.025)
        raise RuntimeError("redis-server did not answer")

    def _process_wait(self, seconds: float) -> None:
        assert self._process is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=seconds)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


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
