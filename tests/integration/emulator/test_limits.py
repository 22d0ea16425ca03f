"""The emulator's limits in the shapes real providers have: how they count, what a limited answer
publishes, what one bucket covers, and how to set them (text, admin API, per route)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from prefect_sessions.emulator import EmulatorConfig, EmulatorHandle
from prefect_sessions.emulator.config import EmulatorConfigError, RateLimit
from prefect_sessions.emulator.ratelimit import Limiter
from prefect_sessions.emulator.state import EmulatorState

VOICEFLOW_KEY = {"authorization": "VF.DM.limits-test.key", "projectID": "p"}
VECTARA_KEY = {"x-api-key": "zqt_limits-test"}
LIVEAVATAR_KEY = {"x-api-key": "la-limits-test"}
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(emulator: EmulatorHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        yield http


# -- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20/1s", RateLimit(20, 1.0)),
        ("20/1s sliding", RateLimit(20, 1.0, counting="sliding")),
        ("20/1s bucket burst=5 publish=none", RateLimit(20, 1.0, "bucket", "none", burst=5)),
        ("inflight=4", RateLimit(4, counting="inflight")),
        ("inflight=4, publish=none", RateLimit(4, counting="inflight", publish="none")),
        (
            "20/1s publish=retry-after scope=endpoint",
            RateLimit(20, 1.0, "fixed", "retry-after", "endpoint"),
        ),
    ],
)
def test_limit_shapes_parse_and_print_back(text: str, expected: RateLimit) -> None:
    parsed = RateLimit.parse(text)
    assert parsed == expected
    assert RateLimit.parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("20/1s leaky", "COUNT/WINDOW or inflight=N"),
        ("publish=none", "has no count"),
        ("20/1s publish=loud", "publish 'loud' is unknown"),
        ("20/1s scope=ip", "scope 'ip' is unknown"),
        ("20/1s burst=5", "burst=N (N >= 1) belongs to a token bucket"),
    ],
)
def test_unusable_shapes_say_what_to_write(text: str, names: str) -> None:
    with pytest.raises(EmulatorConfigError, match=names.replace("(", r"\(").replace(")", r"\)")):
        RateLimit.parse(text)


def test_the_defaults_follow_each_vendors_documents() -> None:
    limits = EmulatorState(EmulatorConfig()).settings.limits
    assert str(limits["voiceflow"]) == "500/60s"  # the runtime's window, headers published
    assert str(limits["liveavatar"]) == "20/1s"  # per caller and endpoint, Retry-After
    assert str(limits["vectara"]) == "inflight=5"  # a bare 429 past 5 in flight


# -- counting, on an injected clock -------------------------------------------------------------


def test_a_fixed_window_opens_at_the_first_request_and_refusals_do_not_count() -> None:
    clock = Clock()
    limiter, limit = Limiter(clock), RateLimit(3, 1.0)
    assert [limiter.take("k", limit).allowed for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5
    refused = limiter.take("k", limit)
    assert not refused.allowed
    assert refused.seconds_to_reset == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.take("k", limit).allowed


def test_a_sliding_window_frees_a_place_when_the_oldest_request_leaves_it() -> None:
    clock = Clock()
    limiter, limit = Limiter(clock), RateLimit(3, 1.0, counting="sliding")
    for step in (0.4, 0.4, 0.1):
        assert limiter.take("k", limit).allowed
        clock.now += step
    refused = limiter.take("k", limit)  # at 0.9 s: the requests of 0, 0.4 and 0.8 s are in it
    assert not refused.allowed
    assert refused.seconds_to_reset == pytest.approx(0.1)
    clock.now += 0.1
    assert limiter.take("k", limit).allowed


def test_a_token_bucket_gives_its_burst_then_its_rate() -> None:
    clock = Clock()
    limiter, limit = Limiter(clock), RateLimit(10, 1.0, counting="bucket", burst=2)
    assert [limiter.take("k", limit).allowed for _ in range(3)] == [True, True, False]
    clock.now += 0.1  # one token refilled at 10 per second
    assert limiter.take("k", limit).allowed
    assert not limiter.take("k", limit).allowed


def test_requests_in_flight_hold_their_place_until_answered() -> None:
    limiter, limit = Limiter(Clock()), RateLimit(2, counting="inflight")
    assert [limiter.take("k", limit).allowed for _ in range(3)] == [True, True, False]
    limiter.leave("k")
    assert limiter.take("k", limit).allowed
    assert limiter.take("other", limit).allowed  # each bucket counts on its own


# -- what a limited answer publishes, over real HTTP ----------------------------------------------


def _state(client: httpx.Client) -> httpx.Response:
    return client.get("/state/user/limits", headers=VOICEFLOW_KEY)


def test_voiceflow_publishes_its_window_on_every_answer(
    emulator: EmulatorHandle, client: httpx.Client
) -> None:
    emulator.set_limit("voiceflow", "2/60s")
    ok = _state(client)
    assert all(name in ok.headers for name in RATE_HEADERS)
    _state(client)
    refused = _state(client)
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert "retry-after" in refused.headers


@pytest.mark.parametrize("publish", ["retry-after", "none"])
def test_a_limit_can_publish_only_retry_after_or_nothing(
    emulator: EmulatorHandle, client: httpx.Client, publish: str
) -> None:
    emulator.set_limit("voiceflow", f"1/60s publish={publish}")
    ok, refused = _state(client), _state(client)
    assert ok.status_code == 200
    assert refused.status_code == 429
    assert not any(name in ok.headers or name in refused.headers for name in RATE_HEADERS)
    assert ("retry-after" in refused.headers) is (publish == "retry-after")


def test_liveavatar_answers_a_429_with_retry_after_and_reset_seconds_only(
    emulator: EmulatorHandle, client: httpx.Client
) -> None:
    emulator.set_limit("liveavatar", "1/60s")
    active = {"type": "active"}
    ok = client.get("/v1/sessions", params=active, headers=LIVEAVATAR_KEY)
    refused = client.get("/v1/sessions", params=active, headers=LIVEAVATAR_KEY)
    assert ok.status_code == 200
    assert not any(name in ok.headers for name in RATE_HEADERS)
    assert refused.status_code == 429
    assert 59 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-reset"] == refused.headers["retry-after"]
    assert "x-ratelimit-limit" not in refused.headers
    # Per caller and endpoint: another endpoint of the same key has its own window.
    assert client.get("/v1/avatars/public", headers=LIVEAVATAR_KEY).status_code == 200


async def test_vectara_refuses_past_five_in_flight_with_a_bare_429(
    emulator: EmulatorHandle,
) -> None:
    headers = {**VECTARA_KEY, "x-emulator-latency-ms": "300"}
    async with httpx.AsyncClient(base_url=emulator.url, timeout=10) as http:
        answers = await asyncio.gather(*(http.get("/v2/agents", headers=headers) for _ in range(8)))
        after = await http.get("/v2/agents", headers=VECTARA_KEY)
    refused = [a for a in answers if a.status_code == 429]
    assert sorted(a.status_code for a in answers) == [200] * 5 + [429] * 3
    assert all(not any(h in a.headers for h in (*RATE_HEADERS, "retry-after")) for a in refused)
    assert "Too many concurrent requests" in refused[0].json()["messages"][0]
    assert after.status_code == 200  # the places were given back


def test_one_route_can_have_its_own_limit(emulator: EmulatorHandle, client: httpx.Client) -> None:
    emulator.set_limit("voiceflow", "off")
    emulator.set_limit("voiceflow", "1/60s publish=none", route="GET /state/user/{userID}")
    assert [_state(client).status_code for _ in range(2)] == [200, 429]
    patched = client.patch("/state/user/limits/variables", json={"a": 1}, headers=VOICEFLOW_KEY)
    assert patched.status_code == 200  # the rest of the provider is not limited
    emulator.set_limit("voiceflow", None, route="GET /state/user/{userID}")
    assert _state(client).status_code == 200


def test_the_admin_api_sets_shapes_per_provider_and_route(
    emulator: EmulatorHandle, client: httpx.Client
) -> None:
    body = {
        "vectara": "10/1s bucket burst=2 publish=none",
        "routes": {"POST /v1/sessions/keep-alive": "5/1s"},
    }
    answer = client.put("/_emulator/limits", json=body)
    assert answer.status_code == 200
    shown = answer.json()
    assert shown["vectara"] == "10/1s bucket burst=2 publish=none"
    assert shown["routes"] == {"POST /v1/sessions/keep-alive": "5/1s"}
    bad = client.put("/_emulator/limits", json={"voiceflow": "20/1s leaky"})
    assert bad.status_code == 400
    assert "COUNT/WINDOW" in bad.json()["detail"]
