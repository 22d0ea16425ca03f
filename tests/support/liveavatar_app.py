"""A small LiveAvatar-shaped server for behaviour tests: real HTTP and a real LITE websocket.

It checks every request body against the vendor OpenAPI (422 in FastAPI's ``detail`` shape when
one does not fit), answers in the ``{code, data, message}`` envelope with code 1000, and checks its
own success bodies against the OpenAPI's response schemas, so behaviour tests are contract tests
too. Faults are queued per route with :meth:`LiveAvatarServer.fail`.

It is not the emulator (``prefect_sessions.emulator``): it exists so the LiveAvatar tests can run
over real sockets with exact control over paging and failures.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from jsonschema import Draft202012Validator

SPEC_PATH = Path(__file__).resolve().parents[3] / "shared" / "specs" / "liveavatar.openapi.json"
# The vendor documents live beside the repo, as in CI. A clone on its own still runs the
# behaviour tests: the server then answers without checking bodies against the OpenAPI, and only
# the tests that read the OpenAPI themselves skip.
SPEC: dict[str, Any] | None = json.loads(SPEC_PATH.read_text()) if SPEC_PATH.exists() else None


def vendor_spec() -> dict[str, Any]:
    """LiveAvatar's OpenAPI; skips the calling test, with the reason, when it is not beside us."""
    if SPEC is None:
        pytest.skip(f"reads LiveAvatar's OpenAPI, not found at {SPEC_PATH}")
    return SPEC


SUCCESS = 1000
TOKEN_PREFIX = "CANARY-session-token-"
CLIENT_TOKEN_PREFIX = "CANARY-livekit-client-"
AGENT_TOKEN_PREFIX = "CANARY-livekit-agent-"


def schema_validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for a schema that may ``$ref`` the OpenAPI's components."""
    return Draft202012Validator(
        {**schema, "components": vendor_spec()["components"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def component(name: str) -> Draft202012Validator:
    return schema_validator({"$ref": f"#/components/schemas/{name}"})


def request_schema(path: str, method: str = "post") -> Draft202012Validator:
    body = vendor_spec()["paths"][path][method]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    return schema_validator(body)


def response_schema(path: str, method: str, status: str) -> Draft202012Validator:
    content = vendor_spec()["paths"][path][method]["responses"][status]["content"][
        "application/json"
    ]
    return schema_validator(content["schema"])


def _request_checker(path: str) -> Draft202012Validator | None:
    """The server's check of a request body; none without the vendor's OpenAPI."""
    return request_schema(path) if SPEC is not None else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class Fault:
    """One canned answer instead of the real one; ``act`` does the real work first."""

    status: int = 200
    code: int | None = 4000
    message: str = "failed"
    act: bool = False


@dataclass
class SessionRecord:
    id: str
    mode: str
    is_sandbox: bool
    token: str
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    started: bool = False
    ws_token: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    end_at: str | None = None
    end_reason: str | None = None
    keep_alives: int = 0
    transcript: list[dict[str, Any]] = field(default_factory=list)

    def entry(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "duration": 0,
            "source": "API",
            "mode": self.mode,
            "is_sandbox": self.is_sandbox,
            "credits_consumed": 0.0,
        }
        if self.end_at:
            body.update(end_at=self.end_at, end_reason=self.end_reason)
        return body


@dataclass
class LiveAvatarServer:
    """State and knobs of the test server; :meth:`app` is the ASGI app."""

    api_key: str
    transcript_page_size: int = 2
    sessions: dict[str, SessionRecord] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    ws_frames: list[dict[str, Any]] = field(default_factory=list)
    ws_preamble: list[dict[str, Any]] = field(
        default_factory=lambda: [{"type": "session.state_updated", "state": "connecting"}]
    )
    ws_connected_state: str = "connected"
    faults: dict[str, deque[Fault]] = field(default_factory=lambda: defaultdict(deque))

    def fail(self, route: str, fault: Fault | None = None, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``route`` with ``fault``."""
        for _ in range(times):
            self.faults[route].append(fault or Fault())

    def stops(self) -> list[tuple[str, str]]:
        """(session_id, reason) of every stop request, in order."""
        return [(body["session_id"], body["reason"]) for op, body in self.calls if op == "stop"]

    def add_session(self, *, ended: bool = False, mode: str = "FULL") -> SessionRecord:
        record = SessionRecord(
            id=str(uuid.uuid4()), mode=mode, is_sandbox=False, token=secrets.token_hex(8)
        )
        if ended:
            record.end_at, record.end_reason = _now(), "USER_CLOSED"
        self.sessions[record.id] = record
        return record

    # -- plumbing -------------------------------------------------------------------------------

    def _fault(self, route: str) -> Fault | None:
        queue = self.faults.get(route)
        return queue.popleft() if queue else None

    @staticmethod
    def _envelope(status: int, data: Any, code: int = SUCCESS, message: str = "OK") -> JSONResponse:
        return JSONResponse({"code": code, "data": data, "message": message}, status_code=status)

    @staticmethod
    def _fault_response(fault: Fault) -> JSONResponse:
        body: dict[str, Any] = {"data": None, "message": fault.message}
        if fault.code is not None:
            body["code"] = fault.code
        return JSONResponse(body, status_code=fault.status)

    @staticmethod
    def _invalid(validator: Draft202012Validator | None, body: Any) -> JSONResponse | None:
        if validator is None:
            return None
        errors = sorted(validator.iter_errors(body), key=lambda error: list(error.path))
        if not errors:
            return None
        detail = [
            {"loc": ["body", *error.path], "msg": error.message[:200], "type": "value_error"}
            for error in errors
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    def _checked(self, path: str, method: str, status: int, data: Any) -> JSONResponse:
        body = {"code": SUCCESS, "data": data, "message": "OK"}
        if SPEC is not None:
            response_schema(path, method, str(status)).validate(body)
        return JSONResponse(body, status_code=status)

    def _api_key_ok(self, request: Request) -> bool:
        return request.headers.get("x-api-key") == self.api_key

    def _unauthorized(self) -> JSONResponse:
        return self._envelope(401, None, code=401, message="Invalid API key")

    def _session(self, session_id: str) -> SessionRecord | None:
        return self.sessions.get(session_id)

    # -- the app --------------------------------------------------------------------------------

    def app(self) -> FastAPI:
        app = FastAPI()
        token_schema = _request_checker("/v1/sessions/token")
        stop_schema = _request_checker("/v1/sessions/stop")
        keep_alive_schema = _request_checker("/v1/sessions/keep-alive")

        @app.post("/v1/sessions/token")
        async def create_token(request: Request) -> JSONResponse:
            if not self._api_key_ok(request):
                return self._unauthorized()
            body = await request.json()
            self.calls.append(("token", body))
            invalid = self._invalid(token_schema, body)
            if invalid:
                return invalid
            if fault := self._fault("token"):
                return self._fault_response(fault)
            record = SessionRecord(
                id=str(uuid.uuid4()),
                mode=body.get("mode", "FULL"),
                is_sandbox=body.get("is_sandbox", False),
                token=TOKEN_PREFIX + secrets.token_hex(8),
            )
            self.sessions[record.id] = record
            data = {"session_id": record.id, "session_token": record.token}
            return self._checked("/v1/sessions/token", "post", 200, data)

        @app.post("/v1/sessions/start")
        async def start(request: Request) -> JSONResponse:
            header = request.headers.get("authorization", "")
            token = header.removeprefix("Bearer ")
            record = next((s for s in self.sessions.values() if s.token == token), None)
            self.calls.append(("start", {"x-api-key": request.headers.get("x-api-key")}))
            if not header.startswith("Bearer ") or record is None:
                return self._envelope(401, None, code=401, message=f"Invalid token {token}")
            fault = self._fault("start")
            if fault and not fault.act:
                return self._fault_response(fault)
            if record.started:
                return self._envelope(400, None, code=400, message="Session already started")
            record.started = True
            base = str(request.base_url).rstrip("/").replace("http://", "ws://", 1)
            data: dict[str, Any] = {
                "session_id": record.id,
                "livekit_url": "wss://livekit.invalid",
                "livekit_client_token": CLIENT_TOKEN_PREFIX + secrets.token_hex(8),
                "livekit_agent_token": AGENT_TOKEN_PREFIX + secrets.token_hex(8),
                "max_session_duration": 600,
            }
            if record.mode == "LITE":
                data["ws_url"] = f"{base}/ws/liveavatar/{record.id}?token={record.ws_token}"
            if fault:
                return self._fault_response(fault)
            return self._checked("/v1/sessions/start", "post", 201, data)

        @app.post("/v1/sessions/keep-alive")
        async def keep_alive(request: Request) -> JSONResponse:
            if not self._api_key_ok(request):
                return self._unauthorized()
            body = await request.json()
            self.calls.append(("keep-alive", body))
            if invalid := self._invalid(keep_alive_schema, body):
                return invalid
            record = self._session(body.get("session_id", ""))
            if record is None:
                return self._envelope(404, None, code=404, message="Session not found")
            if record.end_at or not record.started:
                return self._envelope(400, None, code=400, message="Session is not active")
            record.keep_alives += 1
            record.updated_at = _now()
            return self._checked("/v1/sessions/keep-alive", "post", 200, None)

        @app.post("/v1/sessions/stop")
        async def stop(request: Request) -> JSONResponse:
            if not self._api_key_ok(request):
                return self._unauthorized()
            body = await request.json()
            self.calls.append(("stop", body))
            if invalid := self._invalid(stop_schema, body):
                return invalid
            fault = self._fault("stop")
            if fault and not fault.act:
                return self._fault_response(fault)
            record = self._session(body.get("session_id", ""))
            if record is None:
                return self._envelope(404, None, code=404, message="Session not found")
            if record.end_at:
                return self._envelope(400, None, code=400, message="Session already stopped")
            record.end_at, record.end_reason = _now(), body.get("reason", "UNKNOWN")
            if fault:
                return self._fault_response(fault)
            return self._checked("/v1/sessions/stop", "post", 200, None)

        @app.get("/v1/sessions")
        async def list_sessions(request: Request) -> JSONResponse:
            if not self._api_key_ok(request):
                return self._unauthorized()
            query = request.query_params
            self.calls.append(("list", dict(query)))
            if fault := self._fault("list"):
                return self._fault_response(fault)
            kind = query.get("type")
            page, size = int(query.get("page", 1)), int(query.get("page_size", 20))
            if kind not in ("active", "historic") or page < 1 or not 1 <= size <= 100:
                detail = [{"loc": ["query", "type"], "msg": "invalid query", "type": "enum"}]
                return JSONResponse({"detail": detail}, status_code=422)
            matching = [
                s.entry() for s in self.sessions.values() if bool(s.end_at) == (kind == "historic")
            ]
            results = matching[(page - 1) * size : page * size]
            data: dict[str, Any] = {"count": len(matching), "results": results}
            if page * size < len(matching):
                data["next"] = f"{request.base_url}v1/sessions?type={kind}&page={page + 1}"
            if page > 1:
                data["previous"] = f"{request.base_url}v1/sessions?type={kind}&page={page - 1}"
            return self._checked("/v1/sessions", "get", 200, data)

        @app.get("/v1/sessions/{session_id}")
        async def get_session(session_id: str, request: Request) -> JSONResponse:
            if not self._api_key_ok(request):
                return self._unauthorized()
            self.calls.append(("get", session_id))
            record = self._session(session_id)
            if record is None:
                return self._envelope(404, None, code=404, message="Session not found")
            return self._checked("/v1/sessions/{session_id}", "get", 200, record.entry())

        @app.get("/v1/sessions/{session_id}/transcript")
        async def transcript(session_id: str, request: Request) -> JSONResponse:
            if not self._api_key_ok(request):
                return self._unauthorized()
            query = request.query_params
            self.calls.append(("transcript", {"session_id": session_id, **query}))
            if fault := self._fault("transcript"):
                return self._fault_response(fault)
            record = self._session(session_id)
            if record is None:
                return self._envelope(404, None, code=404, message="Session not found")
            start = int(query["start_timestamp"]) if "start_timestamp" in query else None
            end = int(query["end_timestamp"]) if "end_timestamp" in query else None
            entries = [
                entry
                for entry in record.transcript
                if (start is None or entry["absolute_timestamp"] >= start)
                and (end is None or entry["absolute_timestamp"] <= end)
            ]
            page = entries[: self.transcript_page_size]
            data: dict[str, Any] = {"session_active": not record.end_at, "transcript_data": page}
            if len(entries) > len(page):
                data["next_timestamp"] = entries[len(page)]["absolute_timestamp"]
            return self._checked("/v1/sessions/{session_id}/transcript", "get", 200, data)

        @app.websocket("/ws/liveavatar/{session_id}")
        async def lite_socket(websocket: WebSocket, session_id: str) -> None:
            record = self._session(session_id)
            if record is None or websocket.query_params.get("token") != record.ws_token:
                await websocket.close(code=1008)
                return
            await websocket.accept()
            for event in self.ws_preamble:
                await websocket.send_json(event)
            await websocket.send_json(
                {"type": "session.state_updated", "state": self.ws_connected_state}
            )
            if self.ws_connected_state != "connected":
                await websocket.close()
                return
            await self._serve_lite(websocket, record)

        return app

    async def _serve_lite(self, websocket: WebSocket, record: SessionRecord) -> None:
        speaking: dict[str, int] = {}
        agent_state = "idle"
        try:
            while True:
                frame = await websocket.receive_text()
                message = json.loads(frame)
                self.ws_frames.append({**message, "_bytes": len(frame.encode())})
                kind, event_id = message.get("type"), message.get("event_id")
                task = {"id": f"task-{event_id}"}
                if kind == "agent.speak":
                    audio = base64.b64decode(message["audio"], validate=True)
                    if event_id not in speaking:
                        speaking[event_id] = 0
                        await websocket.send_json(
                            {"type": "agent.speak_started", "event_id": event_id, "task": task}
                        )
                    speaking[event_id] += len(audio)
                elif kind == "agent.speak_end":
                    spoken = speaking.pop(event_id, 0)
                    record.transcript.append(
                        {
                            "role": "avatar",
                            "transcript": f"[{spoken} bytes of audio]",
                            "absolute_timestamp": 1_700_000_000 + len(record.transcript),
                            "relative_timestamp": len(record.transcript),
                        }
                    )
                    await websocket.send_json(
                        {"type": "agent.speak_ended", "event_id": event_id, "task": task}
                    )
                elif kind == "agent.interrupt":
                    speaking.clear()
                    await websocket.send_json({"type": "agent.speak_interrupted"})
                elif kind in ("agent.start_listening", "agent.stop_listening"):
                    new = "listening" if kind == "agent.start_listening" else "idle"
                    await websocket.send_json(
                        {
                            "type": "agent.state_updated",
                            "event_id": event_id,
                            "previous_state": agent_state,
                            "new_state": new,
                        }
                    )
                    agent_state = new
                elif kind == "session.keep_alive":
                    record.keep_alives += 1
                    # An event type this client has no model for: it must arrive whole.
                    await websocket.send_json(
                        {"type": "session.keep_alive_ack", "event_id": event_id, "extra": [1, 2]}
                    )
                elif kind == "test.close":
                    await websocket.close(code=1000)
                    return
                else:
                    await websocket.send_json({"type": "error", "error": f"unknown {kind}"})
        except WebSocketDisconnect:
            return
