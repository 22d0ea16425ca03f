"""Voiceflow's SSE interact stream, on streams shaped like the documented ones."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from prefect_sessions.errors import OutcomeUnknownError
from prefect_sessions.voiceflow import (
    CompletionTrace,
    TextTrace,
    Trace,
    TurnConfig,
    VoiceflowCredentials,
    VoiceflowSession,
)

BASE = "https://vf.example.test"
URL = f"{BASE}/v4/interact/stream"
SESSION = VoiceflowSession(user_id="ada", session_key=SecretStr("sk-s"), project_id="p")
SSE = {"content-type": "text/event-stream"}

# As documented: a leading blank line, id/event/data frames, one end frame with data {}.
DOCUMENTED = (
    b"\n"
    b"event: trace\nid: 1\n"
    b'data: {"type":"text","payload":{"message":"Welcome!"},"time":1718900000}\n\n'
    b"event: trace\nid: 2\n"
    b'data: {"type":"completion","payload":{"state":"start"}}\n\n'
    b"event: trace\nid: 3\n"
    b'data: {"type":"completion","payload":{"state":"content","content":"Refunds take "}}\n\n'
    b"event: trace\nid: 4\n"
    b'data: {"type":"completion","payload":{"state":"content","content":"5 days."}}\n\n'
    b"event: trace\nid: 5\n"
    b'data: {"type":"completion","payload":{"state":"end"}}\n\n'
    b"event: trace\nid: 6\n"
    b'data: {"type":"brand-new","payload":[1,2]}\n\n'
    b"event: end\nid: 7\ndata: {}\n\n"
)


@pytest.fixture
def credentials() -> VoiceflowCredentials:
    return VoiceflowCredentials(api_key="VF.DM.x.y", project_id="p", base_url=BASE)


async def collect(credentials, **kwargs):
    seen = []
    async with (
        credentials.get_client() as client,
        client.interact_stream(SESSION, "refund?", **kwargs) as stream,
    ):
        async for trace in stream:
            seen.append(trace)
    return seen, stream


async def test_traces_are_yielded_as_they_arrive_and_completions_assembled(httpx_mock, credentials):
    httpx_mock.add_response(url=URL, headers=SSE, content=DOCUMENTED)
    seen, stream = await collect(credentials, config=TurnConfig(completion_events=True))
    assert [t.type for t in seen] == ["text"] + ["completion"] * 4 + ["brand-new"]
    assert isinstance(seen[0], TextTrace)
    assert all(isinstance(t, CompletionTrace) for t in seen[1:5])
    assert type(seen[5]) is Trace
    assert seen[5].payload == [1, 2]
    assert stream.finished
    assert stream.result.messages == ["Welcome!", "Refunds take 5 days."]
    request = httpx_mock.get_request()
    assert request.headers["authorization"] == "sk-s"
    assert request.headers["accept"] == "text/event-stream"
    assert b'"completionEvents":true' in request.content


async def test_raw_control_characters_inside_data_are_tolerated(httpx_mock, credentials):
    # Every C0 control character except CR and LF, which end SSE lines by the SSE spec itself.
    controls = bytes(c for c in range(0x20) if c not in (0x0A, 0x0D))
    stream_body = (
        b'event: trace\nid: 1\ndata: {"type":"text","payload":{"message":"a'
        + controls
        + b'b"}}\n\nevent: end\nid: 2\ndata: {}\n\n'
    )
    httpx_mock.add_response(url=URL, headers=SSE, content=stream_body)
    seen, _ = await collect(credentials)
    assert seen[0].payload.message == "a" + controls.decode() + "b"


async def test_a_stream_cut_before_end_raises_outcome_unknown(httpx_mock, credentials):
    cut = DOCUMENTED.split(b"event: trace\nid: 3")[0]
    httpx_mock.add_response(url=URL, headers=SSE, content=cut)
    received = []

    async def consume() -> None:
        async with (
            credentials.get_client() as client,
            client.interact_stream(SESSION, "refund?") as stream,
        ):
            async for trace in stream:
                received.append(trace)

    with pytest.raises(OutcomeUnknownError, match="ended before its end event after 2 traces"):
        await consume()
    assert [t.type for t in received] == ["text", "completion"]


class _Reset(httpx.AsyncByteStream):
    async def __aiter__(self):
        yield DOCUMENTED[:120]
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message")


async def test_a_connection_reset_mid_stream_raises_outcome_unknown(httpx_mock, credentials):
    httpx_mock.add_response(url=URL, headers=SSE, stream=_Reset())
    with pytest.raises(OutcomeUnknownError, match="stream was cut"):
        await collect(credentials)
    assert len(httpx_mock.get_requests()) == 1  # a turn is never sent twice


async def test_a_malformed_trace_raises_outcome_unknown_naming_the_trace(httpx_mock, credentials):
    bad = b'event: trace\nid: 1\ndata: {"type":"text",\n\nevent: end\ndata: {}\n\n'
    httpx_mock.add_response(url=URL, headers=SSE, content=bad)
    with pytest.raises(OutcomeUnknownError, match="trace 1 is unreadable"):
        await collect(credentials)


async def test_a_json_answer_where_a_stream_was_expected_is_reported(httpx_mock, credentials):
    httpx_mock.add_response(url=URL, json={"traces": []})
    with pytest.raises(OutcomeUnknownError, match="not an event stream"):
        await collect(credentials)
