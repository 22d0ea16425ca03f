"""Shared fixtures: a fake clock for exact waits, fresh pacers per test, a client factory."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from prefect_sessions.http import HttpClient, Pacer, RetryPolicy, SecretHeaderAuth
from prefect_sessions.http.breaker import CircuitBreaker
from prefect_sessions.http.pacers import reset_shared_pacers

# What a run remembers across processes (the counts of large suites) goes to a directory of this
# test session, never to the user's cache.
os.environ.setdefault("PREFECT_SESSIONS_CACHE_DIR", tempfile.mkdtemp(prefix="prefect-sessions-"))

#: Fixtures kept with their helpers: ``own_redis`` (a redis-server to stop and start).
pytest_plugins = ["tests.support.own_redis"]

API_KEY = "VF.DM.canary-key-0123456789abcdef.s3cr3t"
BASE_URL = "https://api.example.test"


class FakeTime:
    """A monotonic clock that only moves when someone sleeps on it: waits are exact and instant."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One real Prefect test server for the whole session (about 10 s to start).

    Request it in tests that run flows. Modules that also use ``httpx_mock`` must let the server's
    own traffic through: ``pytestmark = pytest.mark.httpx_mock(should_mock=not_loopback)``.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


def not_loopback(request: Any) -> bool:
    """For ``httpx_mock(should_mock=...)``: mock everything but servers on this machine."""
    return bool(request.url.host not in ("127.0.0.1", "localhost"))


def not_prefect_api(request: Any) -> bool:
    """The default ``should_mock`` of every test: never intercept the local Prefect server.

    Once the session-wide server is up, Prefect ships logs and events to it from background
    threads during any later test, including tests that mock HTTP.
    """
    on_loopback = request.url.host in ("127.0.0.1", "localhost")
    return not (on_loopback and request.url.path.startswith("/api/"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        chosen = any("should_mock" in m.kwargs for m in item.iter_markers("httpx_mock"))
        if not chosen:
            item.add_marker(pytest.mark.httpx_mock(should_mock=not_prefect_api))


@pytest.fixture(autouse=True)
def _fresh_pacers() -> Iterator[None]:
    # Pacers are process-wide by design; a 429 in one test must not pause the next one.
    reset_shared_pacers()
    yield
    reset_shared_pacers()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def make_client(fake_time: FakeTime) -> Callable[..., HttpClient]:
    """An engine client on the fake clock, with jitter fixed at the middle of its range."""

    def make(**overrides: Any) -> HttpClient:
        options: dict[str, Any] = {
            "provider": "Voiceflow",
            "base_url": BASE_URL,
            "auth": SecretHeaderAuth("authorization", SecretStr(API_KEY)),
            "retry": RetryPolicy(),
            "sleep": fake_time.sleep,
            "rand": lambda: 0.5,
            "pacer": Pacer(clock=fake_time.clock, sleep=fake_time.sleep),
            "breaker": CircuitBreaker(BASE_URL, clock=fake_time.clock, sleep=fake_time.sleep),
        }
        options.update(overrides)
        return HttpClient(**options)

    return make
