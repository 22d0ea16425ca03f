"""A suite written out as YAML a person reviews: what a recorded or crawled conversation becomes.

- a button the agent offered becomes a ``button`` expectation, and a button the user pressed a
  ``button`` turn;
- a variable the agent set becomes a ``variable`` expectation (exact);
- free text becomes a ``similar`` expectation against what was said (its threshold a flag);
- a turn the agent did not answer expects ``no_reply``: it never borrows a later turn's reply.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from prefect_sessions.seam.transcripts import RecordedReply, RecordedStep

#: The ``similar`` threshold of recorded free text (``--threshold``).
DEFAULT_THRESHOLD = 0.8


class Flow(dict[str, Any]):
    """A mapping written on one line (``{button: Track my order}``)."""


class FlowList(list[Any]):
    """A list written on one line (``[recorded]``)."""


def expectations(reply: RecordedReply, threshold: float) -> list[dict[str, Any]]:
    """What a recorded reply becomes: similar to its text, its buttons and its variables."""
    if reply.empty and not reply.variables:
        return [Flow(no_reply=True)]
    expect: list[dict[str, Any]] = []
    if reply.text.strip():
        expect.append({"similar": Flow(to=reply.text, threshold=threshold)})
    expect.extend(Flow(button=label) for label in reply.buttons)
    expect.extend(
        {"variable": Flow(name=name, equals=value)}
        for name, value in sorted(reply.variables.items())
        if value is not None
    )
    return expect or [Flow(no_reply=True)]


def turn(step: RecordedStep, threshold: float) -> dict[str, Any]:
    """One suite turn for a recorded step."""
    value: Any = Flow() if step.kind in ("launch", "no_reply") else step.value
    return {step.kind: value, "expect": expectations(step.reply, threshold)}


def fingerprint(steps: Iterable[RecordedStep]) -> str:
    """What a conversation is (its steps and replies), for stable names and folding duplicates."""
    canonical = [
        [s.kind, s.value, list(s.reply.messages), list(s.reply.buttons), s.reply.variables]
        for s in steps
    ]
    text = json.dumps(canonical, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class _Dumper(yaml.SafeDumper):
    """Block style, with flow style kept for short expectation mappings."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _flow_map(dumper: yaml.SafeDumper, value: Flow) -> yaml.MappingNode:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=True)


def _flow_list(dumper: yaml.SafeDumper, value: FlowList) -> yaml.SequenceNode:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(Flow, _flow_map)
_Dumper.add_representer(FlowList, _flow_list)


#: How a conversation's first line starts in the dumped suite (a list item at column 0).
_ID_LINE = "- id: "


def suite_yaml(
    header: str,
    suite: Mapping[str, Any],
    conversations: list[dict[str, Any]],
    comments: Mapping[str, str] | None = None,
) -> str:
    """The suite's YAML: a comment header, its settings, then its conversations, each with the
    comment ``comments`` holds for its ID (if any) above it."""
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    body = yaml.dump(
        {**suite, "conversations": conversations},
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    if comments:
        lines = []
        for line in body.splitlines(keepends=True):
            said = (
                comments.get(line[len("- id: ") :].rstrip("\n"))
                if line.startswith("- id: ")
                else None
            )
            if said is not None:
                lines.append(f"# {said}\n")
            lines.append(line)
        body = "".join(lines)
    return comment + body
