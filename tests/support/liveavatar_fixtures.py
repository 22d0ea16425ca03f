"""Fixtures shared by the LiveAvatar tests (import them into a test module to use them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from prefect_sessions.liveavatar import LiveAvatarCredentials
from tests.support.fixed_window import serve
from tests.support.liveavatar_app import LiveAvatarServer

API_KEY = "CANARY-liveavatar-api-key-5f2b"
AVATAR_ID = "dd73ea75-1218-4ef3-92ce-606d5f7fbc0a"
CONTEXT_ID = "3f1c1a4e-8d1f-4a51-9a0e-2f1d6f4c9b10"
SECRET_ID = "0b7e5c1e-4b8f-4e0e-9a59-5a1d2c3b4a50"


class RecordingSleep:
    """The engine's sleep, recorded and instant (retries are decided, not waited for)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


# Fixtures carry a `name=` so test modules can import them without shadowing warnings:
# `from tests.support.liveavatar_fixtures import la_server_fixture` (with noqa F401).


@pytest.fixture(name="la_server")
def la_server_fixture() -> LiveAvatarServer:
    return LiveAvatarServer(api_key=API_KEY)


@pytest.fixture(name="la_url")
def la_url_fixture(la_server: LiveAvatarServer) -> Iterator[str]:
    with serve(la_server.app()) as url:
        yield url


@pytest.fixture(name="la_credentials")
def la_credentials_fixture(la_url: str) -> LiveAvatarCredentials:
    return LiveAvatarCredentials(api_key=SecretStr(API_KEY), base_url=la_url)


@pytest.fixture(name="engine_sleep")
def engine_sleep_fixture() -> RecordingSleep:
    return RecordingSleep()


def client_options(sleep: RecordingSleep) -> dict[str, Any]:
    """Engine overrides that make retries instant and their jitter fixed."""
    return {"sleep": sleep, "rand": lambda: 0.5}
