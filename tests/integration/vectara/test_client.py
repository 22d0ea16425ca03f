"""The Vectara client's behaviour over real HTTP on 127.0.0.1, against a Vectara-shaped server.

``tests/support/vectara_app.py`` speaks the spec's contract and injects faults on demand: an
``error`` event mid-stream, a stream cut before ``end``, a repeated ``page_key``, expiring and
revoked OAuth tokens, and error messages that echo the caller's credentials.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from prefect_sessions.errors import (
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    OutcomeUnknownError,
    ProviderError,
)
from prefect_sessions.vectara import (
    AgentStreamError,
    InputMessageEvent,
    OAuthClientCredentials,
    ToolInputEvent,
    UnknownEvent,
    VectaraCredentials,
    forget_tokens,
)
from tests.support.fixed_window import serve
from tests.support.vectara_app import VectaraServer

API_KEY = "vectara-canary-API-KEY-91c2e7"
CLIENT_SECRET = "vectara-canary-CLIENT-SECRET-5d0b"
AGENT = "support"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _no_cached_tokens() -> Iterator[None]:
    forget_tokens()
    yield
    forget_tokens()


@pytest.fixture
def server() -> VectaraServer:
    return VectaraServer(api_key=API_KEY, client_secret=CLIENT_SECRET)


@pytest.fixture
def url(server: VectaraServer) -> Iterator[str]:
    with serve(server.app()) as base:
        yield base


@pytest.fixture
def credentials(url: str) -> VectaraCredentials:
    return VectaraCredentials(base_url=url, api_key=SecretStr(API_KEY), max_attempts=2)


def oauth_credentials(url: str, secret: str = CLIENT_SECRET) -> VectaraCredentials:
    return VectaraCredentials(
        base_url=url,
        client_id="app-client",
        client_secret=SecretStr(secret),
        token_url=f"{url}/oauth2/token",
        max_attempts=1,
    )


async def seed(credentials: VectaraCredentials, count: int) -> list[str]:
    async with credentials.get_client() as client:
        return [
            (await client.create_session(AGENT, name=f"session {i}", key=f"s{i}")).key
            for i in range(count)
        ]


# -- pagination -----------------------------------------------------------------------------------


async def test_list_sessions_follows_page_keys_across_several_pages(server, credentials):
    keys = await seed(credentials, 7)
    async with credentials.get_client() as client:
        listed = [s.key async for s in client.list_sessions(AGENT, page_size=3)]
    assert listed == keys
    pages = server.sent("GET", f"/v2/agents/{AGENT}/sessions")
    assert len(pages) == 3


async def test_list_sessions_passes_the_filter(server, credentials):
    await seed(credentials, 3)
    async with credentials.get_client() as client:
        listed = [s.name async for s in client.list_sessions(AGENT, filter="session [02]$")]
    assert listed == ["session 0", "session 2"]


async def test_list_events_pages_through_a_conversation(server, credentials):
    (key,) = await seed(credentials, 1)
    async with credentials.get_client() as client:
        await client.send_message(AGENT, key, "first")
        await client.send_message(AGENT, key, "second")
        events = [e async for e in client.list_events(AGENT, key, page_size=4)]
        one = await client.get_event(AGENT, key, events[5].id or "")
    assert len(events) == 10
    assert [e.type for e in events[:5]] == [
        "input_message",
        "thinking",
        "tool_input",
        "tool_output",
        "agent_output",
    ]
    assert isinstance(events[5], InputMessageEvent)
    assert events[5].messages[0].content == "second"
    assert one == events[5]
    assert len(server.sent("GET", f"/v2/agents/{AGENT}/sessions/{key}/events")) == 4


async def test_a_page_key_seen_before_stops_paging_with_an_error(server, credentials):
    await seed(credentials, 5)
    server.repeat_page_key = True
    async with credentials.get_client() as client:
        with pytest.raises(ProviderError, match="page_key it had returned before"):
            _ = [s async for s in client.list_sessions(AGENT, page_size=2)]


async def test_a_page_key_seen_before_stops_listing_events_too(server, credentials):
    (key,) = await seed(credentials, 1)
    async with credentials.get_client() as client:
        await client.send_message(AGENT, key, "first")
        await client.send_message(AGENT, key, "second")
        server.repeat_page_key = True
        with pytest.raises(ProviderError, match="page_key it had returned before"):
            _ = [e async for e in client.list_events(AGENT, key, page_size=2)]


# -- sessions -------------------------------------------------------------------------------------


async def test_session_lifecycle_and_typed_errors(server, credentials):
    creds = credentials.model_copy(update={"request_timeout_seconds": 12})
    async with creds.get_client() as client:
        created = await client.create_session(
            AGENT, name="Billing", key="bill_1", metadata={"tier": "gold"}, tti_minutes=30
        )
        updated = await client.update_session(AGENT, "bill_1", enabled=False, name="Billing 2")
        fetched = await client.get_session(AGENT, "bill_1")
        assert await client.delete_session(AGENT, "bill_1") is True
        with pytest.raises(NotFoundError) as missing:
            await client.get_session(AGENT, "bill_1")
        assert await client.delete_session(AGENT, "bill_1", missing_ok=True) is False
    assert created.metadata == {"tier": "gold"}
    assert created.tti_minutes == 30
    assert fetched == updated
    assert updated.enabled is False
    assert updated.name == "Billing 2"
    assert missing.value.request_id is not None
    assert missing.value.request_id in str(missing.value)
    assert all(headers["request-timeout"] == "12" for _, _, headers in server.requests)


async def test_a_duplicate_key_is_an_invalid_request_and_is_not_retried(server, credentials):
    await seed(credentials, 1)
    async with credentials.get_client() as client:
        with pytest.raises(ProviderError, match="already exists") as caught:
            await client.create_session(AGENT, name="other", key="s0")
    assert caught.value.status_code == 409
    assert len(server.sent("POST", f"/v2/agents/{AGENT}/sessions")) == 2


# -- messages and streams -------------------------------------------------------------------------


async def test_send_message_returns_output_events_and_the_final_text(credentials):
    (key,) = await seed(credentials, 1)
    async with credentials.get_client() as client:
        reply = await client.send_message(AGENT, key, "Where is my order?")
    assert reply.text == "You said: Where is my order?"
    assert [e.type for e in reply.events] == [
        "thinking",
        "tool_input",
        "tool_output",
        "agent_output",
    ]
    assert reply.input_event_id is not None
    assert reply.input_event_id.startswith("aev_")


async def test_a_streamed_message_folds_chunks_and_keeps_unknown_events(credentials):
    (key,) = await seed(credentials, 1)
    async with credentials.get_client() as client:
        reply = await client.send_message_streamed(AGENT, key, "hello big world")
    assert reply.text == "You said: hello big world"
    assert isinstance(reply.events[0], ToolInputEvent)
    assert reply.events[0].tool_input == {"q": "hello big world"}
    unknown = reply.events[-1]
    assert isinstance(unknown, UnknownEvent)
    assert unknown.model_dump() == {"type": "brand_new_kind", "detail": {"x": 1}}


async def test_an_error_event_mid_stream_raises_and_the_message_is_not_resent(server, credentials):
    (key,) = await seed(credentials, 1)
    seen: list[str] = []

    async def consume(client: Any) -> None:
        async for event in client.stream_message(AGENT, key, "please fail"):
            seen.append(event.type)

    async with credentials.get_client() as client:
        with pytest.raises(AgentStreamError) as caught:
            await consume(client)
        stored = [e async for e in client.list_events(AGENT, key)]
    assert seen == [
        "streaming_thinking",
        "streaming_thinking_end",
        "tool_input",
        "tool_output",
        "streaming_agent_output",
        "streaming_agent_output",
    ]
    assert "agent_processing_failed" in str(caught.value)
    assert caught.value.retryable is False
    assert len(server.sent("POST", f"/v2/agents/{AGENT}/sessions/{key}/events")) == 1
    assert [e.type for e in stored] == ["input_message", "thinking", "tool_input", "tool_output"]


async def test_a_stream_cut_before_end_is_an_unknown_outcome(server, credentials):
    (key,) = await seed(credentials, 1)
    async with credentials.get_client() as client:
        with pytest.raises(OutcomeUnknownError, match="without its 'end' event"):
            await client.send_message_streamed(AGENT, key, "cut me off")
    assert len(server.sent("POST", f"/v2/agents/{AGENT}/sessions/{key}/events")) == 1


# -- OAuth ----------------------------------------------------------------------------------------


async def test_one_token_serves_many_requests_and_is_refreshed_on_expiry(server, url):
    server.token_lifetime = 600
    clock = Clock()
    creds = oauth_credentials(url)
    auth = creds.auth(clock=clock)
    async with creds.get_client(auth=auth) as client:
        await client.create_session(AGENT, name="n", key="k")
        await asyncio.gather(*(client.get_session(AGENT, "k") for _ in range(5)))
        assert server.token_fetches == 1
        clock.now += 600 - 31  # a second before the refresh point, 30 s before expiry
        await client.get_session(AGENT, "k")
        assert server.token_fetches == 1
        clock.now += 1
        await client.get_session(AGENT, "k")
    assert server.token_fetches == 2
    bearers = [headers["authorization"] for _, _, headers in server.requests]
    assert bearers == ["Bearer tok-1"] * 7 + ["Bearer tok-2"]
    assert all("x-api-key" not in headers for _, _, headers in server.requests)


async def test_a_token_is_shared_by_clients_of_the_same_app_client(server, url):
    creds = oauth_credentials(url)
    for _ in range(3):
        async with creds.get_client() as client:
            _ = [s async for s in client.list_sessions(AGENT)]
    assert server.token_fetches == 1


async def test_a_revoked_token_is_replaced_once_and_the_request_resent(server, url):
    creds = oauth_credentials(url)
    async with creds.get_client() as client:
        await client.create_session(AGENT, name="n", key="k")
        server.revoke_tokens()
        reply = await client.send_message(AGENT, "k", "hi")
    assert reply.text == "You said: hi"
    assert server.token_fetches == 2
    posts = server.sent("POST", f"/v2/agents/{AGENT}/sessions/k/events")
    assert [headers["authorization"] for _, _, headers in posts] == [
        "Bearer tok-1",
        "Bearer tok-2",
    ]


async def test_a_refused_client_secret_is_an_authentication_error_without_the_secret(server, url):
    server.echo_credentials_in_errors = True
    wrong = "vectara-canary-WRONG-SECRET-77aa"
    creds = oauth_credentials(url, secret=wrong)
    async with creds.get_client() as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.get_session(AGENT, "k")
    text = str(caught.value)
    assert "fetch OAuth token" in text
    assert "client_secret" in text
    assert "invalid_client" in text
    assert wrong not in text
    assert wrong not in repr(caught.value.__reduce__())
    assert server.requests == []  # the API itself was never called


# -- secrets --------------------------------------------------------------------------------------


async def test_the_api_key_never_shows_in_reprs_errors_or_logs(server, url, caplog):
    caplog.set_level(logging.DEBUG)
    server.echo_credentials_in_errors = True
    server.api_key = "a-different-key"  # so ours is refused and echoed back
    creds = VectaraCredentials(base_url=url, api_key=SecretStr(API_KEY))
    async with creds.get_client() as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.get_session(AGENT, "k")
        shown = [repr(creds), str(creds), repr(client), repr(client.http), str(creds.model_dump())]
    assert "**********" in str(caught.value)
    for text in [*shown, str(caught.value), caplog.text]:
        assert API_KEY not in text


async def test_the_oauth_secrets_never_show_in_reprs_or_logs(server, url, caplog):
    caplog.set_level(logging.DEBUG)
    creds = oauth_credentials(url)
    async with creds.get_client() as client:
        await client.create_session(AGENT, name="n", key="k")
        auth = creds.auth()
        shown = [repr(creds), repr(auth), repr(client), str(creds.model_dump())]
    assert isinstance(auth, OAuthClientCredentials)
    assert len(auth.secret_values()) == 2  # the client secret and the cached token
    for text in [*shown, caplog.text]:
        assert CLIENT_SECRET not in text
        assert "tok-1" not in text


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "no way to sign in to Vectara"),
        ({"client_id": "c"}, "missing client_secret"),
        ({"api_key": "k", "client_id": "c", "client_secret": "s"}, "not both"),
        ({"api_key": " "}, "api_key is empty"),
    ],
)
def test_the_block_says_which_credential_is_missing(fields, message):
    creds = VectaraCredentials(base_url="http://127.0.0.1:9", **fields)
    with pytest.raises(ConfigurationError, match=message):
        creds.get_client()


def test_the_token_url_must_be_http():
    with pytest.raises(ValueError, match="token_url must start with http"):
        VectaraCredentials(client_id="c", client_secret="s", token_url="auth.vectara.io")
