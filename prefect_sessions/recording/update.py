"""``prefect-sessions run --update-expectations``: a suite's expectations written from what the
agent answers now, as snapshot tools do (Jest ``-u``, syrupy ``--snapshot-update``).

Each conversation's turns are taken once on a fresh session, with no expectation checked and no
stop at a mismatch, and each turn's expectations are rewritten from its answer:

- free text: the turn's ``similar`` is set to what was said (one is added if it had none);
- buttons: exactly the buttons offered (``button`` expectations added and removed);
- variables: each ``variable`` expectation takes the value the session has now;
- a turn the agent did not answer expects ``no_reply``;
- a word check (``contains``, ``regex``, ...) that no longer holds is listed and removed;
  ``judge`` rubrics and the ones that hold are kept as written.

The suite file is edited in place, round-trip (comments, order and layout kept), and a diff is
printed for review. Conversations from a dataset, with templates or with a simulated user are
left as they are (one spec stands for many conversations, or its turns are not scripted). It
never writes when ``CI`` is set: expectations are updated on a workstation, reviewed, committed.
"""

from __future__ import annotations

import asyncio
import difflib
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect_sessions.conversation.dataset import templated
from prefect_sessions.conversation.suite import ConversationSpec, LoadedSuite
from prefect_sessions.errors import ConfigurationError, PrefectSessionsError
from prefect_sessions.recording.replay import Answered, replay
from prefect_sessions.recording.source import Source
from prefect_sessions.seam.adapter import ConversationFailure
from prefect_sessions.seam.judged import DEFAULT_SIMILARITY
from prefect_sessions.seam.turns import Turn

#: Word checks that are kept while they hold, and removed when they no longer do.
_WORD_CHECKS = frozenset({"contains", "not_contains", "regex", "trace_type", "latency_ms_below"})


def refuse_in_ci(environ: Mapping[str, str] | None = None) -> str | None:
    """Why expectations must not be written here (``CI`` is set), or ``None``."""
    value = (os.environ if environ is None else environ).get("CI", "")
    if value.strip().casefold() in ("", "0", "false", "no"):
        return None
    return (
        "will not update expectations while CI is set: a CI job checks expectations and never "
        "writes them; update them on a workstation, review the diff and commit it"
    )


@dataclass
class Update:
    """What an update changed, for the summary."""

    text: str = ""
    diff: str = ""
    conversations: int = 0
    added: int = 0
    removed: list[str] = field(default_factory=list)
    changed: int = 0
    left: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"updated {self.conversations} conversations: {self.added} expectations added, "
            f"{self.changed} changed, {len(self.removed)} removed"
        )


def _flow(mapping: dict[str, Any]) -> Any:
    """A mapping written on one line, its text double-quoted (any agent's words stay valid YAML
    in a flow mapping, for every YAML reader)."""
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    made = CommentedMap(
        {k: DoubleQuotedScalarString(v) if isinstance(v, str) else v for k, v in mapping.items()}
    )
    made.fa.set_flow_style()
    return made


def _keyed(key: str, inner: dict[str, Any]) -> Any:
    """``- key: {...}``: one expectation whose value is a one-line mapping."""
    from ruamel.yaml.comments import CommentedMap

    return CommentedMap({key: _flow(inner)})


def _rewrite(
    expect: Any, turn: Turn, answered: Answered, where: str, update: Update, threshold: float
) -> None:
    """Rewrite one turn's ``expect`` list (a round-trip sequence) from its answer, in place."""
    reply = answered.reply
    offered = reply.choices
    keep: list[Any] = []
    has_similar = False
    buttons_seen: set[str] = set()
    for raw, parsed in zip(list(expect), turn.expect, strict=True):
        kind = parsed.kind
        if kind == "similar":
            has_similar = True
            if not reply.text.strip():
                update.removed.append(f"{where}: {parsed.describe()} (it said nothing)")
                continue
            if list(parsed.value.to) != [reply.text]:
                raw["similar"] = _flow({"to": reply.text, "threshold": parsed.value.threshold})
                update.changed += 1
        elif kind == "button":
            if parsed.value not in offered:
                update.removed.append(f"{where}: button {parsed.value!r} (no longer offered)")
                continue
            buttons_seen.add(parsed.value)
        elif kind == "variable":
            check = parsed.value
            variables = answered.variables or {}
            if check.name not in variables:
                update.removed.append(f"{where}: variable {check.name!r} (no longer set)")
                continue
            if parsed.failure(reply, variables) is not None:
                raw["variable"] = _flow({"name": check.name, "equals": variables[check.name]})
                update.changed += 1
        elif kind == "no_reply":
            if reply.messages or offered:
                update.removed.append(f"{where}: no_reply (it answers now)")
                continue
        elif kind in _WORD_CHECKS and parsed.failure(reply, answered.variables) is not None:
            update.removed.append(f"{where}: {parsed.describe()} (no longer holds)")
            continue
        keep.append(raw)
    if reply.text.strip() and not has_similar:
        keep.insert(0, _keyed("similar", {"to": reply.text, "threshold": threshold}))
        update.added += 1
    for label in offered:
        if label not in buttons_seen:
            keep.append(_flow({"button": label}))
            update.added += 1
    if not reply.messages and not offered and not any(e.kind == "no_reply" for e in turn.expect):
        keep.append(_flow({"no_reply": True}))
        update.added += 1
    if list(expect) != keep:
        del expect[:]
        expect.extend(keep)
        # A changed list is written one expectation per line (a one-line list of one-key
        # mappings reads badly once long); the lists left alone keep their layout.
        expect.fa.set_block_style()


async def _answers(
    source: Source, specs: list[tuple[int, ConversationSpec]], update: Update, concurrency: int
) -> dict[int, list[Answered]]:
    gate = asyncio.Semaphore(concurrency)
    found: dict[int, list[Answered]] = {}

    async def one(index: int, spec: ConversationSpec, adapter: Any) -> None:
        reads = {n for n, turn in enumerate(spec.turns) if turn.needs_variables}
        async with gate:
            try:
                found[index] = await replay(
                    adapter, spec.id, spec.turns, variables=spec.variables, read_variables=reads
                )
            except (ConversationFailure, PrefectSessionsError) as exc:
                update.failed.append(f"{spec.id}: {exc}")

    async with source.provider.adapter(source.settings) as adapter:
        await asyncio.gather(*(one(i, spec, adapter) for i, spec in specs))
    return found


async def update_expectations(
    loaded: LoadedSuite, source: Source, before: str, *, threshold: float = DEFAULT_SIMILARITY
) -> Update:
    """Take each selected conversation's turns once and rewrite its expectations in the suite's
    text ``before`` (returned with its diff; the caller writes it)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedSeq
    from ruamel.yaml.util import load_yaml_guess_indent

    update = Update()
    path = Path(loaded.path)
    _, indent, offset = load_yaml_guess_indent(before)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 100
    # Written back with the file's own indentation of lists ("  - id:" or "- id:").
    yaml.indent(mapping=2, sequence=indent or 2, offset=offset or 0)
    document = yaml.load(before)
    specs: list[tuple[int, ConversationSpec]] = []
    for index, spec in enumerate(loaded.suite.conversations):
        if not loaded.selection.takes(spec.id, spec.tags):
            continue
        if spec.dataset or spec.simulate is not None or templated(spec.model_dump()):
            update.left.append(spec.id)
            continue
        specs.append((index, spec))
    if not specs:
        raise ConfigurationError(
            f"{path}: no conversation to update: those from a dataset, with templates or with "
            "a simulated user are left as written"
        )
    answers = await _answers(source, specs, update, loaded.suite.concurrency)
    for index, spec in specs:
        answered = answers.get(index)
        if answered is None:
            continue
        raw_turns = document["conversations"][index]["turns"]
        for number, (turn, raw, answer) in enumerate(
            zip(spec.turns, raw_turns, answered, strict=True), start=1
        ):
            if "expect" not in raw or raw["expect"] is None:
                raw["expect"] = CommentedSeq()
            elif isinstance(raw["expect"], dict):  # a single expectation written without a list
                raw["expect"] = CommentedSeq([raw["expect"]])
            where = f"{spec.id} turn {number}"
            _rewrite(raw["expect"], turn, answer, where, update, threshold)
        update.conversations += 1
    out = io.StringIO()
    yaml.dump(document, out)
    update.text = out.getvalue()
    update.diff = "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            update.text.splitlines(keepends=True),
            fromfile=f"{path} (before)",
            tofile=f"{path} (updated)",
        )
    )
    return update
