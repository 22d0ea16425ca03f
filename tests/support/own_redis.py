"""A redis-server of a test's own, on a free loopback port, to stop and start as an outage would."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis


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
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server on PATH (Debian: apt-get install redis-server)")
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()
