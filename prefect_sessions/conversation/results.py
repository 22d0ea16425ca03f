"""What happened in each conversation, kept as one JSON line per conversation.

Lines are appended as conversations finish, so memory does not grow with the suite, a killed run
loses at most the conversations in flight, and a re-run can skip what already finished.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TextIO

from pydantic import BaseModel, Field, ValidationError

from prefect_sessions.seam.judged import Judgement

Status = Literal["passed", "failed", "errored"]

#: A results file's byte offsets fit in this many bits (a terabyte).
_OFFSET_BITS = 40
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1


def run_key_of(conversation_id: str, repetition: int, repeats: int) -> str:
    """``id`` for a conversation run once, ``id#2`` for the second of its repeated runs."""
    return conversation_id if repeats == 1 else f"{conversation_id}#{repetition}"


def _key_of(seen: dict[str, Any]) -> str:
    """The run key of a results line read as JSON."""
    return run_key_of(str(seen["id"]), int(seen.get("repetition", 1)), int(seen.get("repeats", 1)))


#: The first fields of a results line as :class:`ConversationResult` writes them, in order:
#: what :meth:`ResultStore.finished` needs, read without parsing the turns after them (a third
#: of the time of parsing the line; resuming 100,000 lines reads 150 MB).
_HEAD = re.compile(
    rb'\{"id":"((?:[^"\\]|\\.)*)","status":"([a-z]+)",.*?,"fingerprint":"((?:[^"\\]|\\.)*)",'
    rb'"tags":\[[^\]]*\],"repetition":([0-9]+),"repeats":([0-9]+),'
)


def _finished_head(line: bytes) -> tuple[str, str, str] | None:
    """A line's run key, status and fingerprint; None when the line is not whole."""
    head = _HEAD.match(line)
    # Whole, and one line: a line a kill cut has no end, and the next one appended after it
    # joins it (two heads in one line, where JSON would refuse both).
    if head is not None and line.endswith(b"}\n") and line.count(b'{"id":"') == 1:
        conversation_id, status, fingerprint = _text(head[1]), head[2], _text(head[3])
        key = run_key_of(conversation_id, int(head[4]), int(head[5]))
        return key, status.decode(), fingerprint
    try:  # any other writing of a line (an older version's, a tool's): read as JSON
        seen = json.loads(line)
        return _key_of(seen), str(seen["status"]), str(seen.get("fingerprint", ""))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _text(raw: bytes) -> str:
    """A JSON string's text, from between its quotes."""
    return json.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode()


class TurnRecord(BaseModel):
    """One turn as it happened."""

    turn: str
    messages: list[str] = Field(default_factory=list)
    trace_types: list[str] = Field(default_factory=list)
    buttons: list[str] = Field(default_factory=list)
    latency_ms: float = 0.0
    failures: list[str] = Field(default_factory=list)
    failed_kinds: list[str] = Field(
        default_factory=list, description="The kind of each expectation that did not hold."
    )
    judgements: list[Judgement] = Field(
        default_factory=list,
        description="Its judged expectations (judge, similar): score, threshold and reason.",
    )
    simulated: bool = Field(default=False, description="A simulated user wrote this turn.")


class ConversationResult(BaseModel):
    """The outcome of one conversation: passed, failed (an expectation did not hold, or a step
    could not be taken) or errored (the provider or the transport failed)."""

    id: str
    status: Status
    reason: str | None = None
    error_type: str | None = Field(
        default=None, description="The error's class name when the conversation errored."
    )
    origin: str = ""
    fingerprint: str = ""
    tags: list[str] = Field(default_factory=list)
    repetition: int = Field(default=1, description="Which run of a repeated conversation, from 1.")
    repeats: int = Field(default=1, description="How many times the conversation runs.")
    pass_rate: float = Field(default=1.0, description="The share of its runs that must pass.")
    attempts: int = 1
    requests: int = Field(default=0, description="HTTP requests sent for it, retries included.")
    rate_limited: int = Field(default=0, description="Of those, the ones answered 429.")
    duration_ms: float = 0.0
    turns: list[TurnRecord] = Field(default_factory=list)
    judgements: list[Judgement] = Field(
        default_factory=list,
        description="The judged expectations on the whole conversation, at its end.",
    )
    stopped: str | None = Field(
        default=None,
        description="Why a simulated conversation ended: goal met, budget spent, stop marker.",
    )
    usage: dict[str, float] = Field(
        default_factory=dict,
        description="What the provider reports it cost (session minutes, credits, context).",
    )
    position: int = Field(default=0, description="Where it stands in the run's order.")
    row: dict[str, Any] = Field(
        default_factory=dict, description="Its dataset row: the input columns of its output row."
    )
    outputs: dict[str, Any] = Field(
        default_factory=dict, description="Its named outputs (None: it did not produce one)."
    )
    output_notes: dict[str, str] = Field(
        default_factory=dict, description="Why each output that is None is None."
    )
    finished_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    def output_row(self) -> dict[str, Any]:
        """Its row of the output dataset: the input row's columns, the outputs, which run of which
        conversation it is, the status and the reason, and why any output is missing."""
        notes = "; ".join(f"{name}: {why}" for name, why in self.output_notes.items())
        return {
            **self.row,
            **self.outputs,
            "conversation": self.key,
            "status": self.status,
            "reason": self.reason,
            "output_notes": notes or None,
        }

    @property
    def key(self) -> str:
        """This run of the conversation in a results file: ``id``, or ``id#2`` when repeated."""
        return run_key_of(self.id, self.repetition, self.repeats)


class ResultStore:
    """An append-only JSONL file of :class:`ConversationResult`, safe to share between tasks."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._folder_made = False
        self._handle: TextIO | None = None
        self._keep_open = False

    def __iter__(self) -> Iterator[ConversationResult]:
        """Every result written so far; a line cut by a killed process is skipped."""
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    yield ConversationResult.model_validate_json(line)
                except ValidationError:
                    continue

    def _lines(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Each line's byte offset and its JSON object, without building the result (resuming a
        run of 100,000 lines must not cost seconds); a line a killed process cut is skipped."""
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            offset = 0
            for line in iter(handle.readline, b""):
                try:
                    seen = json.loads(line)
                except ValueError:
                    seen = None
                if isinstance(seen, dict):
                    yield offset, seen
                offset += len(line)

    def spending(self) -> Iterator[tuple[float, dict[str, float]]]:
        """What each line cost: ``(requests, usage)``, every attempt's (each spent quota)."""
        for _, seen in self._lines():
            try:
                yield float(seen.get("requests", 0)), dict(seen.get("usage") or {})
            except (ValueError, TypeError, AttributeError):
                continue  # a line whose figures are not numbers

    def finished(self) -> dict[str, str]:
        """``{run key: fingerprint}`` of conversation runs that reached a verdict (passed or
        failed). Errored ones are not finished: a resumed run tries them again."""
        done: dict[str, str] = {}
        if not self.path.exists():
            return done
        with self.path.open("rb") as handle:
            for line in handle:
                head = _finished_head(line)
                if head is None:
                    continue  # a line without its fields, or one a killed process cut
                key, status, fingerprint = head
                if status == "errored":
                    done.pop(key, None)
                else:
                    done[key] = fingerprint
        return done

    def append(self, result: ConversationResult) -> None:
        line = result.model_dump_json() + "\n"
        with self._lock:
            if self._handle is None and self._keep_open:
                self._make_folder()
                self._handle = self.path.open("a", encoding="utf-8")
            if self._handle is not None:
                self._write(self._handle, line)
                return
            self._make_folder()
            with self.path.open("a", encoding="utf-8") as handle:
                self._write(handle, line)

    @staticmethod
    def _write(handle: TextIO, line: str) -> None:
        # One write per line in append mode, flushed: a kill can cut the last line, never mix
        # two, and every finished conversation is on disk.
        handle.write(line)
        handle.flush()

    def _make_folder(self) -> None:
        if not self._folder_made:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._folder_made = True

    @contextmanager
    def appending(self) -> Iterator[ResultStore]:
        """Keep the file open for the block's appends (a chunk of conversations), instead of
        opening it for each; opened at the first append, so a block that finishes nothing (the
        provider down) leaves no file behind."""
        with self._lock:
            self._keep_open = True
        try:
            yield self
        finally:
            with self._lock:
                self._keep_open = False
                handle, self._handle = self._handle, None
            if handle is not None:
                handle.close()

    def replace_all(self, results: Iterable[ConversationResult]) -> None:
        """Write ``results`` as the whole file, atomically: a reader sees the old file or the new
        one, never half of it (a sharded run's merge; a re-run never doubles a line)."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(self.path.name + ".partial")
            with partial.open("w", encoding="utf-8") as handle:
                for result in results:
                    handle.write(result.model_dump_json() + "\n")
            os.replace(partial, self.path)

    def latest(self) -> dict[str, ConversationResult]:
        """The last result of each conversation run, by run key (a resumed run may have retried
        it)."""
        latest: dict[str, ConversationResult] = {}
        for result in self:
            latest[result.key] = result
        return latest

    def in_order(self) -> Iterator[ConversationResult]:
        """The latest result of each conversation run, in the run's order, read one at a time:
        only an index of the file (a position and a byte offset per run) is held, so reading a
        run of 100,000 conversations costs the memory of one."""
        if not self.path.exists():
            return
        # One int per run key: its position above the line's byte offset (so sorting them is
        # sorting by place, then by line), half the memory of a tuple of the two.
        places: dict[str, int] = {}
        for offset, seen in self._lines():
            try:
                places[_key_of(seen)] = int(seen.get("position", 0)) << _OFFSET_BITS | offset
            except (ValueError, TypeError, KeyError):
                continue  # a line without its fields: nothing to keep
        order = sorted(places.values())
        del places
        with self.path.open("rb") as handle:
            for place in order:
                handle.seek(place & _OFFSET_MASK)
                yield ConversationResult.model_validate_json(handle.readline())
