"""Helpers of the reliability suite: a wiretap inside the emulator, suites, and accounting.

The wiretap is what lets a test say "no turn was sent twice unless the server provably did not act":
an *outer* tap (in front of the emulator's rate limits and faults) sees every request that reached
the server and how it was answered; an *inner* tap (behind them, in front of the provider routes)
sees only the requests the emulated provider itself handled, i.e. acted on.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prefect_sessions.conversation.results import ConversationResult, ResultStore
from prefect_sessions.emulator import EmulatorConfig
from prefect_sessions.emulator.server import EmulatorHandle, run_emulator

API_KEY = "VF.DM.reliability-0123456789abcdef.key"
PROJECT = "demo"
INTERACT = "POST /v4/interact"
START = "POST /v4/project/{projectID}/environment/{environmentID}/session"
DELETE_STATE = "DELETE /state/user/{userID}"
#: Answers that prove the server did not act on a request.
NOT_ACTED = frozenset({429, 503})


@dataclass
class Seen:
    """One request as a tap saw it. ``status`` is ``None`` when no answer was started."""

    method: str
    path: str
    credential: str  # the authorization header, or the x-api-key one
    body: bytes
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def turn(self) -> tuple[str, bytes]:
        """What identifies one turn: the session it was sent on and what it said."""
        return (hashlib.sha256(self.credential.encode()).hexdigest(), self.body)


class Wiretap:
    """Pure ASGI middleware that records each provider request and the status of its answer."""

    def __init__(
        self, app: ASGIApp, *, seen: list[Seen], after: Callable[[Seen], None] | None = None
    ) -> None:
        self.app = app
        self.seen = seen
        self.after = after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_emulator"):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        record = Seen(
            method=scope["method"],
            path=scope["path"],
            credential=headers.get("authorization") or headers.get("x-api-key", ""),
            body=b"".join(m.get("body", b"") for m in messages),
        )
        self.seen.append(record)

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                record.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
            await send(message)

        await self.app(scope, replay, watch)
        if self.after is not None:
            self.after(record)


@dataclass
class Tap:
    """What the two taps saw, and a hook run after the provider handled a request."""

    outer: list[Seen] = field(default_factory=list)
    inner: list[Seen] = field(default_factory=list)
    hook: Callable[[Seen], None] | None = None

    def clear(self) -> None:
        self.outer.clear()
        self.inner.clear()
        self.hook = None

    def _after(self, record: Seen) -> None:
        if self.hook is not None:
            self.hook(record)

    def acted(self, path: str = "/v4/interact") -> list[Seen]:
        """Requests on ``path`` the provider handled and answered with success."""
        return [
            s
            for s in self.inner
            if s.path == path and s.status is not None and 200 <= s.status < 300
        ]

    def assert_no_turn_acted_twice(self, path: str = "/v4/interact") -> None:
        """The provider never took the same turn twice on the same session."""
        twice = [turn for turn, n in Counter(s.turn for s in self.acted(path)).items() if n > 1]
        assert twice == [], f"{len(twice)} turns were taken twice on the same session"

    def assert_resent_only_when_not_acted(self, path: str = "/v4/interact") -> int:
        """A turn went to the server again on the same session only after an answer that proves
        the server did not act (429 or 503). Returns how many re-sends there were."""
        sends: dict[tuple[str, bytes], list[Seen]] = {}
        for record in self.outer:
            if record.path == path:
                sends.setdefault(record.turn, []).append(record)
        resent = 0
        for attempts in sends.values():
            for earlier in attempts[:-1]:
                assert earlier.status in NOT_ACTED, (
                    f"a turn was sent again after an answer of {earlier.status}, "
                    "which does not prove the server did not act"
                )
                resent += 1
        return resent


@contextmanager
def tapped_emulator(config: EmulatorConfig | None = None) -> Iterator[tuple[EmulatorHandle, Tap]]:
    """A fresh emulator over real HTTP with the two taps installed before its first request."""
    with run_emulator(config or EmulatorConfig(limits={"voiceflow": None})) as handle:
        tap = Tap()
        middleware = handle.app.user_middleware
        middleware.insert(0, Middleware(Wiretap, seen=tap.outer))  # type: ignore[arg-type]
        middleware.append(Middleware(Wiretap, seen=tap.inner, after=tap._after))  # type: ignore[arg-type]
        yield handle, tap


def write_suite(
    directory: Path,
    url: str,
    *,
    rows: int,
    name: str = "reliability",
    concurrency: int = 1,
    turns: str | None = None,
    key_env: str = "RELIABILITY_KEY",
    header: str | None = None,
    cleanup: bool = False,
) -> Path:
    """A Voiceflow suite of ``rows`` conversations (ids ``c-u000``...) from a CSV dataset;
    ``cleanup`` deletes each conversation's state at its end."""
    (directory / f"{name}.csv").write_text(
        "user\n" + "".join(f"u{i:05d}\n" if rows > 1000 else f"u{i:03d}\n" for i in range(rows)),
        encoding="utf-8",
    )
    turns = turns or (
        """\
          - launch: {}
            expect: [{contains: Welcome}]
          - text: "I need a refund"
            expect: [{contains: refund}]
          - text: "My order number is 12345"
            expect: [{contains: "12345"}]
        """
    )
    head = header or (
        f'connection: {{base_url: "{url}", api_key_env: {key_env}, project_id: {PROJECT}}}\n'
    )
    text = (
        f"name: {name}\nprovider: voiceflow\n{head}concurrency: {concurrency}\n"
        f"cleanup: {str(cleanup).lower()}\n"
        "conversations:\n"
        f'  - id: "c-{{{{ row.user }}}}"\n    dataset: {name}.csv\n    turns:\n'
        + textwrap.indent(textwrap.dedent(turns), "      ")
    )
    path = directory / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def conversation_ids(rows: int) -> set[str]:
    return {f"c-u{i:05d}" if rows > 1000 else f"c-u{i:03d}" for i in range(rows)}


def accounted(store: ResultStore, ids: set[str]) -> dict[str, ConversationResult]:
    """Every conversation has a verdict, and every one that did not pass says why."""
    latest = store.latest()
    assert set(latest) == ids, f"missing: {sorted(ids - set(latest))[:5]}"
    for result in latest.values():
        assert result.status in ("passed", "failed", "errored")
        if result.status != "passed":
            assert result.reason, f"{result.id} {result.status} without a reason"
        assert result.attempts in (1, 2)  # at most one restart from a fresh session
    return latest


def outcome_counts(latest: dict[str, ConversationResult]) -> dict[str, int]:
    """The figures a report gives: verdicts, and conversations retried whole."""
    counts = Counter(r.status for r in latest.values())
    return {
        "passed": counts["passed"],
        "failed": counts["failed"],
        "errored": counts["errored"],
        "restarted": sum(1 for r in latest.values() if r.attempts > 1),
    }


def json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
