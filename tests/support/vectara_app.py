"""A small Vectara-Agents-shaped server for behaviour tests, with faults on demand.

It speaks the contract of ``../shared/specs/vectara-agents.openapi.yaml``: session CRUD with
cursor pages, events (JSON and SSE ``data:`` lines ending with ``end``), the error envelope
``{messages, request_id, field_errors | id}``, ``x-api-key`` or an OAuth 2.0 bearer token from
``POST /oauth2/token``. The agent answers ``"You said: <text>"``. Faults are flags on the object.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_KEY = re.compile(r"^[0-9a-zA-Z_-]{1,50}$")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class VectaraServer:
    api_key: str = "vectara-test-key"
    client_id: str = "app-client"
    client_secret: str = "app-secret"
    token_lifetime: int = 3600
    # faults
    repeat_page_key: bool = False
    echo_credentials_in_errors: bool = False
    # observations
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    token_fetches: int = 0
    _tokens: dict[str, float] = field(default_factory=dict)
    _sessions: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    _events: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    _counter: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def revoke_tokens(self) -> None:
        self._tokens.clear()

    def sent(self, method: str, path_prefix: str) -> list[tuple[str, str, dict[str, str]]]:
        return [r for r in self.requests if r[0] == method and r[1].startswith(path_prefix)]

    def _next(self, prefix: str) -> str:
        with self._lock:
            self._counter += 1
            return f"{prefix}{self._counter:06d}"

    # -- plumbing ------------------------------------------------------------------------------

    def _error(
        self, status: int, message: str, *, field_errors: dict[str, str] | None = None, **more: Any
    ) -> JSONResponse:
        body: dict[str, Any] = {"messages": [message], "request_id": self._next("req_"), **more}
        if field_errors:
            body["field_errors"] = field_errors
        return JSONResponse(body, status_code=status)

    def _authorised(self, request: Request) -> JSONResponse | None:
        key = request.headers.get("x-api-key")
        bearer = request.headers.get("authorization", "")
        if key == self.api_key:
            return None
        if bearer.startswith("Bearer "):
            expires = self._tokens.get(bearer.removeprefix("Bearer "))
            if expires is not None and time.monotonic() < expires:
                return None
        said = f" ({key or bearer})" if self.echo_credentials_in_errors else ""
        return self._error(401, f"unauthorized: invalid or missing API key{said}")

    def app(self) -> Starlette:
        def route(path: str, handler: Any, methods: list[str]) -> Route:
            async def endpoint(request: Request) -> Response:
                self.requests.append((request.method, request.url.path, dict(request.headers)))
                refused = self._authorised(request)
                if refused is not None:
                    return refused
                response: Response = await handler(request)
                return response

            return Route(path, endpoint, methods=methods)

        sessions = "/v2/agents/{agent_key}/sessions"
        return Starlette(
            routes=[
                Route("/oauth2/token", self.token, methods=["POST"]),
                route(sessions, self.create_session, ["POST"]),
                route(sessions, self.list_sessions, ["GET"]),
                route(sessions + "/{session_key}", self.get_session, ["GET"]),
                route(sessions + "/{session_key}", self.update_session, ["PATCH"]),
                route(sessions + "/{session_key}", self.delete_session, ["DELETE"]),
                route(sessions + "/{session_key}/events", self.create_event, ["POST"]),
                route(sessions + "/{session_key}/events", self.list_events, ["GET"]),
                route(sessions + "/{session_key}/events/{event_id}", self.get_event, ["GET"]),
            ]
        )

    # -- OAuth -----------------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        # Parsed by hand: starlette's form parser needs python-multipart, not installed here.
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        secret = form.get("client_secret")
        if form.get("client_id") != self.client_id or secret != self.client_secret:
            said = f" for {secret}" if self.echo_credentials_in_errors else ""
            return JSONResponse({"error": f"invalid_client{said}"}, status_code=401)
        self.token_fetches += 1
        token = f"tok-{self.token_fetches}"
        self._tokens[token] = time.monotonic() + self.token_lifetime
        return JSONResponse(
            {"access_token": token, "token_type": "bearer", "expires_in": self.token_lifetime}
        )

    # -- sessions --------------------------------------------------------------------------------

    def _session(self, request: Request) -> tuple[dict[str, Any] | None, JSONResponse | None]:
        agent, key = request.path_params["agent_key"], request.path_params["session_key"]
        session = self._sessions.get(agent, {}).get(key)
        if session is None:
            return None, self._error(404, f"session_not_found: {key}", id=key)
        return session, None

    async def create_session(self, request: Request) -> Response:
        agent = request.path_params["agent_key"]
        body = await request.json()
        if not isinstance(body.get("name"), str) or not body["name"]:
            return self._error(400, "invalid_request", field_errors={"name": "is required"})
        if not isinstance(body.get("metadata", {}), dict):
            return self._error(
                400, "invalid_metadata", field_errors={"metadata": "must be an object"}
            )
        key = body.get("key") or self._next("ase_")
        if not _KEY.fullmatch(key):
            return self._error(400, "invalid_request", field_errors={"key": "invalid pattern"})
        store = self._sessions.setdefault(agent, {})
        if key in store:
            return self._error(409, f"session {key} already exists")
        session = {
            "key": key,
            "agent_key": agent,
            "name": body["name"],
            "metadata": body.get("metadata", {}),
            "enabled": body.get("enabled", True),
            "tti_minutes": body.get("tti_minutes", 0),
            "created_at": _now(),
        }
        if "description" in body:
            session["description"] = body["description"]
        store[key] = session
        self._events[(agent, key)] = []
        return JSONResponse(session, status_code=201)

    def _page(self, request: Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        limit = int(request.query_params.get("limit", "10"))
        start = 0
        if "page_key" in request.query_params:
            start = int(base64.urlsafe_b64decode(request.query_params["page_key"]).decode())
        page = items[start : start + limit]
        metadata: dict[str, str] = {}
        if start + limit < len(items):
            offset = start if self.repeat_page_key and start else start + limit
            metadata["page_key"] = base64.urlsafe_b64encode(str(offset).encode()).decode()
        return page, metadata

    async def list_sessions(self, request: Request) -> Response:
        sessions = list(self._sessions.get(request.path_params["agent_key"], {}).values())
        pattern = request.query_params.get("filter")
        if pattern:
            regex = re.compile(pattern)
            sessions = [
                s
                for s in sessions
                if regex.search(s["name"]) or regex.search(s.get("description", ""))
            ]
        page, metadata = self._page(request, sessions)
        return JSONResponse({"sessions": page, "metadata": metadata})

    async def get_session(self, request: Request) -> Response:
        session, missing = self._session(request)
        return missing or JSONResponse(session)

    async def update_session(self, request: Request) -> Response:
        session, missing = self._session(request)
        if missing:
            return missing
        assert session is not None
        body = await request.json()
        unknown = set(body) - {"name", "description", "metadata", "enabled", "tti_minutes"}
        if unknown:
            return self._error(400, "invalid_request", field_errors={k: "unknown" for k in unknown})
        session.update(body)
        return JSONResponse(session)

    async def delete_session(self, request: Request) -> Response:
        _, missing = self._session(request)
        if missing:
            return missing
        agent, key = request.path_params["agent_key"], request.path_params["session_key"]
        del self._sessions[agent][key]
        del self._events[(agent, key)]
        return Response(status_code=204)

    # -- events ----------------------------------------------------------------------------------

    def _event(self, session_key: str, kind: str, **fields: Any) -> dict[str, Any]:
        return {
            "id": self._next("aev_"),
            "session_key": session_key,
            "type": kind,
            "created_at": _now(),
            **fields,
        }

    async def create_event(self, request: Request) -> Response:
        session, missing = self._session(request)
        if missing:
            return missing
        assert session is not None
        body = await request.json()
        messages = body.get("messages")
        if body.get("type", "input_message") != "input_message" or not messages:
            return self._error(400, "invalid_message_content", field_errors={"messages": "empty"})
        text = " ".join(m.get("content", "") for m in messages)
        key = session["key"]
        stored = self._events[(session["agent_key"], key)]
        stored.append(self._event(key, "input_message", messages=messages))
        answer = f"You said: {text}"
        thinking = self._event(key, "thinking", content="Reading the message.")
        tool_in = self._event(
            key,
            "tool_input",
            tool_call_id="call_1",
            tool_configuration_name="lookup",
            tool_name="lookup",
            tool_input={"q": text},
        )
        tool_out = self._event(
            key,
            "tool_output",
            tool_call_id="call_1",
            tool_configuration_name="lookup",
            tool_name="lookup",
            tool_output={"hits": 1},
        )
        output = self._event(key, "agent_output", content=answer)
        new = [thinking, tool_in, tool_out, output]
        if not body.get("stream_response"):
            stored.extend(new)
            return JSONResponse({"session_key": key, "events": [stored[-5], *new]}, status_code=201)

        async def frames() -> AsyncIterator[bytes]:
            def data(payload: dict[str, Any]) -> bytes:
                return f"data: {json.dumps(payload)}\n\n".encode()

            yield data({"type": "streaming_thinking", "content": "Reading", "created_at": _now()})
            yield data({"type": "streaming_thinking_end", "created_at": _now()})
            yield data(tool_in)
            yield data(tool_out)
            stored.extend([thinking, tool_in, tool_out])
            words = answer.split(" ")
            for index, word in enumerate(words):
                chunk = word if index == 0 else f" {word}"
                piece = {"type": "streaming_agent_output", "content": chunk, "created_at": _now()}
                yield data(piece)
                if "fail" in text and index == 1:
                    yield data({"type": "error", "messages": ["agent_processing_failed"]})
                    yield data({"type": "end"})
                    return
                if "cut" in text and index == 1:
                    return  # the connection ends without the `end` event
            yield data({"type": "streaming_agent_output_end", "created_at": _now()})
            yield data({"type": "brand_new_kind", "detail": {"x": 1}})
            stored.append(output)
            yield data({"type": "end"})

        return StreamingResponse(frames(), status_code=201, media_type="text/event-stream")

    async def list_events(self, request: Request) -> Response:
        session, missing = self._session(request)
        if missing:
            return missing
        assert session is not None
        page, metadata = self._page(request, self._events[(session["agent_key"], session["key"])])
        return JSONResponse({"events": page, "metadata": metadata})

    async def get_event(self, request: Request) -> Response:
        session, missing = self._session(request)
        if missing:
            return missing
        assert session is not None
        wanted = request.path_params["event_id"]
        for event in self._events[(session["agent_key"], session["key"])]:
            if event["id"] == wanted:
                return JSONResponse(event)
        return self._error(404, f"event {wanted} not found", id=wanted)
