"""Vectara's official Python SDK (``vectara``, pinned in the Makefile) against a server, unchanged
but for its base URL: the agent, session and event calls a user of the SDK makes. Run in its own
virtual environment (the SDK pins its own PyYAML), it prints one JSON object of what it saw and
exits 1 on the first call that fails, naming it.

    python vectara_sdk_session.py BASE_URL API_KEY
"""

from __future__ import annotations

import json
import sys
import traceback

from vectara import Vectara
from vectara.agent_events.types.create_agent_events_request_body import (
    CreateAgentEventsRequestBody_InputMessage,
)
from vectara.agent_events.types.create_agent_events_stream_request_body import (
    CreateAgentEventsStreamRequestBody_InputMessage,
)
from vectara.core.api_error import ApiError
from vectara.environment import VectaraEnvironment
from vectara.types import AgentInput_Text


def main(base_url: str, api_key: str) -> dict[str, object]:
    client = Vectara(
        api_key=api_key, environment=VectaraEnvironment(default=base_url, auth=base_url)
    )
    seen: dict[str, object] = {}
    step = "agents.list"
    try:
        agents = list(client.agents.list())
        seen["agents"] = [agent.key for agent in agents]
        agent = agents[0].key
        step = "agent_sessions.create"
        session = client.agent_sessions.create(
            agent, name="sdk contract", metadata={"tier": "gold"}
        )
        step = "agent_sessions.get"
        seen["got"] = client.agent_sessions.get(agent, session.key).key == session.key
        step = "agent_sessions.update"
        seen["updated"] = client.agent_sessions.update(agent, session.key, name="renamed").name
        step = "agent_sessions.list"
        seen["listed"] = session.key in [s.key for s in client.agent_sessions.list(agent)]
        step = "agent_events.create"
        text = AgentInput_Text(content="I need a refund")
        reply = client.agent_events.create(
            agent, session.key, request=CreateAgentEventsRequestBody_InputMessage(messages=[text])
        )
        seen["json_events"] = [event.type for event in reply.events]
        step = "agent_events.create_stream"
        streamed = client.agent_events.create_stream(
            agent,
            session.key,
            request=CreateAgentEventsStreamRequestBody_InputMessage(
                messages=[AgentInput_Text(content="order 424242")]
            ),
        )
        seen["stream_events"] = sorted({event.type for event in streamed})
        step = "agent_events.list"
        seen["stored_events"] = [
            event.type for event in client.agent_events.list(agent, session.key)
        ]
        step = "agent_sessions.delete"
        client.agent_sessions.delete(agent, session.key)
        step = "agent_sessions.get after delete"
        try:
            client.agent_sessions.get(agent, session.key)
            seen["after_delete"] = "found"
        except ApiError as exc:
            seen["after_delete"] = exc.status_code
    except Exception as exc:
        print(json.dumps({"failed": step, "error": f"{type(exc).__name__}: {exc}"[:2000]}))
        traceback.print_exc()
        sys.exit(1)
    return seen


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
