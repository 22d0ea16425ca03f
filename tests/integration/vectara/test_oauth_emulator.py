"""Vectara's OAuth client-credentials path end to end against the emulator's token endpoint:
a form post, 30-minute tokens, a 401 on a bad secret, and a refresh, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from prefect_sessions.emulator import EmulatorConfig, EmulatorHandle, run_emulator
from prefect_sessions.errors import AuthenticationError
from prefect_sessions.vectara import VectaraCredentials
from prefect_sessions.vectara.auth import forget_tokens

SECRET = "vectara-oauth-emulator-secret"
TOKEN = "POST /oauth2/token"
AGENT = "agt_acme_support"  # the emulator's scripted agent


class WallClock:
    """The emulator's clock, ``offset`` seconds ahead of the real one."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> WallClock:
    return WallClock()


@pytest.fixture
def emulator(clock: WallClock) -> Iterator[EmulatorHandle]:
    forget_tokens()
    with run_emulator(EmulatorConfig(api_keys={SECRET}), clock=clock) as handle:
        yield handle
    forget_tokens()


def oauth(url: str, secret: str = SECRET) -> VectaraCredentials:
    return VectaraCredentials(
        base_url=url,
        client_id="emulator-app",
        client_secret=SecretStr(secret),
        token_url=f"{url}/oauth2/token",
        max_attempts=1,
    )


def test_the_token_endpoint_speaks_oauth(emulator: EmulatorHandle) -> None:
    form = {"grant_type": "client_credentials", "client_id": "app", "client_secret": SECRET}
    with httpx.Client(base_url=emulator.url) as http:
        issued = http.post("/oauth2/token", data=form)
        refused = http.post("/oauth2/token", data={**form, "client_secret": "wrong"})
        basic = http.post(
            "/oauth2/token", data={"grant_type": "client_credentials"}, auth=("app", SECRET)
        )
        grant = http.post("/oauth2/token", data={**form, "grant_type": "password"})
    assert issued.status_code == 200
    body = issued.json()
    assert (body["token_type"], body["expires_in"]) == ("bearer", 1800)
    assert body["access_token"].startswith("vat_")
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")
    assert basic.status_code == 200
    assert (grant.status_code, grant.json()["error"]) == (400, "unsupported_grant_type")


async def test_the_client_fetches_once_uses_the_token_and_refreshes_after_expiry(
    emulator: EmulatorHandle, clock: WallClock
) -> None:
    async with oauth(emulator.url).get_client() as client:
        session = await client.create_session(AGENT, name="oauth")
        assert emulator.count("requests", route=TOKEN) == 1
        # 31 minutes later on the server: the token is dead there, still cached here. The API
        # answers 401; the client fetches a new token once and sends the request again.
        clock.offset += 31 * 60
        again = await client.get_session(AGENT, session.key)
    assert again.key == session.key
    assert emulator.count("requests", route=TOKEN) == 2


async def test_a_bad_secret_is_an_authentication_error_without_the_secret(
    emulator: EmulatorHandle,
) -> None:
    wrong = "vectara-canary-wrong-secret-5d1c"
    async with oauth(emulator.url, secret=wrong).get_client() as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.create_session(AGENT, name="refused")
    assert wrong not in str(caught.value)
    assert "token" in str(caught.value).lower()
