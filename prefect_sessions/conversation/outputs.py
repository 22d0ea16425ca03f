"""Named outputs: what a conversation hands on to the next step of a pipeline, as data.

A suite, or one conversation of it, declares ``outputs:``, each a name and one kind::

    outputs:
      answer: {reply: last}                             # the last reply's text; {reply: 2}: turn 2
      topic: {variable: topic}                          # a variable's value at the end (Voiceflow)
      amount: {regex: "balance is ([0-9.]+)", group: 1} # the first match over the replies
      category: {structured: "$.category"}              # a path into Vectara's structured output
      said: {transcript: true}                          # every line of the transcript (LiveAvatar)
      spent: {usage: requests}                          # requests, rate_limited, or a usage amount
      verdict: {status: true}                           # passed, failed or errored
      why: {reason: true}                               # the first failure or the error
      ended: {stopped: true}                            # why a simulated user stopped

Outputs are taken when the conversation ends, from its replies, its variables and its counts,
provider-neutral: a provider's adapter puts what it knows into its :class:`Reply` objects
(Vectara's structured output, LiveAvatar's transcript lines). An output that a conversation
did not produce is ``None``, with the reason in its result's ``output_notes``: never a crash.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prefect_sessions.seam.provider import COMMON_OUTPUTS as PROVIDER_COMMON_OUTPUTS
from prefect_sessions.seam.turns import Reply

OutputKind = Literal[
    "reply", "variable", "regex", "structured", "transcript", "usage", "status", "reason", "stopped"
]
OUTPUT_KINDS: tuple[str, ...] = get_args(OutputKind)
#: Output kinds every provider can give (the rest need a provider capability).
COMMON_OUTPUTS = PROVIDER_COMMON_OUTPUTS
#: An output's name: a column name a CSV, a database table and pandas all take.
OUTPUT_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
#: Columns every output row has besides the input row's and the outputs.
RESERVED_COLUMNS = ("conversation", "status", "reason", "output_notes")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def parse_path(path: str) -> list[str | int]:
    """A JSON path (``$``, ``$.a.b``, ``$.items[0]``, ``$['a b']``) as its steps.

    Raises:
        ValueError: the path does not parse, saying how to write one.
    """
    if not path.startswith("$"):
        raise ValueError(f"{path!r} is not a JSON path: start it with '$', e.g. '$.category'")
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            raise ValueError(
                f"{path!r} is not a JSON path at character {position + 1}: use '.name', "
                "'[index]' or \"['name']\" steps, e.g. '$.items[0].name'"
            )
        name, index, quoted, double = match.groups()
        steps.append(int(index) if index is not None else name or quoted or double or "")
        position = match.end()
    return steps


class Output(BaseModel):
    """One named output: its kind and what it takes (see the module docs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: OutputKind
    value: Any = None
    group: int | str = Field(default=1, description="For a regex: the group to keep.")

    @model_validator(mode="before")
    @classmethod
    def _from_mapping(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" not in data:
            kinds = [key for key in data if key in OUTPUT_KINDS]
            unknown = [key for key in data if key not in OUTPUT_KINDS and key != "group"]
            if unknown or len(kinds) != 1:
                raise ValueError(
                    f"an output has exactly one kind key ({', '.join(OUTPUT_KINDS)}), as in "
                    "{reply: last} or {regex: 'balance is ([0-9.]+)', group: 1}"
                )
            (kind,) = kinds
            rest = {key: value for key, value in data.items() if key != kind}
            if "group" in rest and kind != "regex":
                raise ValueError("'group' goes with a 'regex' output only")
            return {"kind": kind, "value": data[kind], **rest}
        return data

    @model_validator(mode="after")
    def _value_fits_kind(self) -> Output:
        kind, value = self.kind, self.value
        if kind == "reply" and not (
            value == "last"
            or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
        ):
            raise ValueError("reply: 'last', or the number of a turn from 1 (reply: 2)")
        if kind in ("variable", "usage") and not (isinstance(value, str) and value):
            example = "topic" if kind == "variable" else "requests"
            raise ValueError(f"{kind}: the name to take, e.g. {{{kind}: {example}}}")
        if kind == "regex":
            if not isinstance(value, str):
                raise ValueError("regex: a pattern, e.g. {regex: 'balance is ([0-9.]+)'}")
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise ValueError(f"regex {value!r} does not compile: {exc}") from None
            group = self.group
            named = isinstance(group, str) and group in pattern.groupindex
            numbered = isinstance(group, int) and 0 <= group <= pattern.groups
            if not (named or numbered):
                raise ValueError(
                    f"regex {value!r} has no group {group!r} (it has {pattern.groups}): add the "
                    "group to the pattern, e.g. '... ([0-9.]+)', or set 'group' to one it has"
                )
        if kind == "structured":
            if not isinstance(value, str):
                raise ValueError("structured: a JSON path, e.g. {structured: '$.category'}")
            parse_path(value)
        if kind in ("transcript", "status", "reason", "stopped") and value is not True:
            raise ValueError(f"{kind}: write {{{kind}: true}}")
        return self

    @property
    def needs_variables(self) -> bool:
        return self.kind == "variable"

    def describe(self) -> str:
        value = self.value if self.value is not True else "true"
        return f"{self.kind}: {value}"


#: A conversation's outputs: name to output, in the order they are declared.
Outputs = Mapping[str, Output]


@dataclass
class Taken:
    """What one conversation gave, to take outputs from."""

    replies: Sequence[Reply] = ()
    variables: Mapping[str, Any] | None = None
    status: str = "errored"
    reason: str | None = None
    counts: Mapping[str, float] = field(default_factory=dict)
    usage: Mapping[str, float] = field(default_factory=dict)
    #: Why a simulated conversation stopped (None for a scripted one).
    stopped: str | None = None


def _walk(value: Any, steps: list[str | int]) -> tuple[Any, str | None]:
    for step in steps:
        if isinstance(step, int) and isinstance(value, list):
            if step >= len(value):
                return None, f"index {step} is past the end of a list of {len(value)}"
            value = value[step]
        elif isinstance(step, str) and isinstance(value, dict):
            if step not in value:
                return None, f"no key {step!r} (it has {', '.join(map(str, value)) or 'none'})"
            value = value[step]
        else:
            return None, f"cannot take {step!r} from a {type(value).__name__}"
    return value, None


def take(output: Output, taken: Taken) -> tuple[Any, str | None]:
    """The output's value from what a conversation gave, or ``(None, why)``."""
    replies = list(taken.replies)
    kind, value = output.kind, output.value
    if kind == "reply":
        answered = [reply for reply in replies if reply.messages or reply.structured is not None]
        if value == "last":
            if not answered:
                return None, "the agent gave no reply"
            return answered[-1].text, None
        if value > len(replies):
            return None, f"turn {value} was not reached ({len(replies)} turns taken)"
        reply = replies[value - 1]
        if not reply.messages and reply.structured is None:
            return None, f"turn {value} got no reply"
        return reply.text, None
    if kind == "regex":
        pattern = re.compile(value)
        for reply in replies:
            match = pattern.search(reply.text)
            if match is not None:
                return match.group(output.group), None
        return None, f"no reply matched {value!r}"
    if kind == "variable":
        if taken.variables is None:
            return None, "the variables could not be read"
        if value not in taken.variables:
            return None, f"no variable {value!r} was set"
        return taken.variables[value], None
    if kind == "structured":
        found = [reply.structured for reply in replies if reply.structured is not None]
        if not found:
            return None, "the agent gave no structured output"
        return _walk(found[-1], parse_path(value))
    if kind == "transcript":
        lines = [message for reply in replies for message in reply.messages]
        return "\n".join(lines) if lines else None, None if lines else "the transcript is empty"
    if kind == "usage":
        if value in taken.counts:
            return taken.counts[value], None
        if value in taken.usage:
            return taken.usage[value], None
        return None, f"no usage {value!r} was reported"
    if kind == "status":
        return taken.status, None
    if kind == "stopped":
        return taken.stopped, None if taken.stopped else "not a simulated conversation"
    return taken.reason, None


def take_all(outputs: Outputs, taken: Taken) -> tuple[dict[str, Any], dict[str, str]]:
    """Every output's value, and why each one that is ``None`` is."""
    values: dict[str, Any] = {}
    notes: dict[str, str] = {}
    for name, output in outputs.items():
        values[name], why = take(output, taken)
        if why is not None:
            notes[name] = why
    return values, notes


__all__ = [
    "COMMON_OUTPUTS",
    "OUTPUT_KINDS",
    "OUTPUT_NAME",
    "RESERVED_COLUMNS",
    "Output",
    "OutputKind",
    "Outputs",
    "Taken",
    "parse_path",
    "take",
    "take_all",
]
