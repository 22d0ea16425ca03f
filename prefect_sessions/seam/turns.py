"""The steps of a scripted conversation and what each answer is expected to contain.

In a suite file a turn is a mapping with one kind key and an optional ``expect`` list, and an
expectation is a mapping with one kind key::

    - text: "I need a refund"
      expect: [{contains: "refund"}, {regex: "order (number|id)"}]

``judge`` and ``similar`` judge meaning, not words (:mod:`prefect_sessions.seam.judged`); they
are checked by the run's judge, not here.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prefect_sessions.seam.judged import JudgeSpec, SimilarSpec

TurnKind = Literal["launch", "text", "button", "event", "intent", "no_reply", "set_variables"]
TURN_KINDS: tuple[str, ...] = get_args(TurnKind)

ExpectationKind = Literal[
    "contains",
    "not_contains",
    "regex",
    "trace_type",
    "button",
    "variable",
    "latency_ms_below",
    "no_reply",
    "judge",
    "similar",
]
EXPECTATION_KINDS: tuple[str, ...] = get_args(ExpectationKind)
#: Expectations a model judges (or embeddings compare): they need the run's judge.
JUDGED_KINDS = frozenset({"judge", "similar"})


class Reply(BaseModel):
    """What the agent answered to one turn, in provider-neutral terms."""

    messages: list[str] = Field(default_factory=list)
    trace_types: list[str] = Field(default_factory=list)
    buttons: list[str] = Field(default_factory=list)
    links: list[str] = Field(
        default_factory=list, description="Of its buttons, those that open a web page."
    )
    ended: bool = False
    latency_ms: float = 0.0
    structured: Any = Field(
        default=None, description="The answer as JSON, from an agent with a structured output."
    )

    @property
    def text(self) -> str:
        return "\n".join(self.messages)

    @property
    def choices(self) -> list[str]:
        """Its buttons a user can press: those that do not open a web page."""
        return [label for label in self.buttons if label not in self.links]


class VariableCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    equals: Any = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one_check(self) -> VariableCheck:
        if (self.equals is None) == (self.regex is None):
            raise ValueError("a variable expectation needs exactly one of 'equals' or 'regex'")
        if self.regex is not None:
            _compile(self.regex)
        return self


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


class Expectation(BaseModel):
    """One check of an answer. ``kind`` says which; ``value`` is its argument."""

    model_config = ConfigDict(frozen=True)

    needs_variables: ClassVar[frozenset[str]] = frozenset({"variable"})

    kind: ExpectationKind
    value: Any

    @model_validator(mode="before")
    @classmethod
    def _from_mapping(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" not in data:
            keys = list(data)
            if len(keys) != 1:
                raise ValueError(
                    f"an expectation has exactly one kind key ({', '.join(EXPECTATION_KINDS)}); "
                    f"got {keys or 'none'}"
                )
            kind = keys[0]
            if kind not in EXPECTATION_KINDS:
                raise ValueError(
                    f"unknown expectation {kind!r}: use one of {', '.join(EXPECTATION_KINDS)}"
                )
            return {"kind": kind, "value": data[kind]}
        return data

    @model_validator(mode="after")
    def _value_fits_kind(self) -> Expectation:
        kind, value = self.kind, self.value
        if kind in ("contains", "not_contains", "trace_type", "button", "regex"):
            if not isinstance(value, str) or not value:
                raise ValueError(f"'{kind}' takes a non-empty string")
            if kind == "regex":
                _compile(value)
        elif kind == "no_reply":
            if value is not True:
                raise ValueError("'no_reply' takes true: the agent says nothing and offers nothing")
        elif kind == "latency_ms_below":
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError("'latency_ms_below' takes a positive number of milliseconds")
        elif kind == "variable":
            object.__setattr__(self, "value", VariableCheck.model_validate(value))
        elif kind == "judge":
            object.__setattr__(self, "value", JudgeSpec.model_validate(value))
        elif kind == "similar":
            object.__setattr__(self, "value", SimilarSpec.model_validate(value))
        return self

    @property
    def judged(self) -> bool:
        """Whether a model (or embeddings) checks it, rather than :meth:`failure`."""
        return self.kind in JUDGED_KINDS

    def describe(self) -> str:
        if isinstance(self.value, JudgeSpec | SimilarSpec):
            return self.value.describe()
        if isinstance(self.value, VariableCheck):
            check = self.value
            test = f"= {check.equals!r}" if check.regex is None else f"~ /{check.regex}/"
            return f"variable {check.name} {test}"
        return f"{self.kind} {self.value!r}"

    def failure(self, reply: Reply, variables: dict[str, Any] | None) -> str | None:
        """Why ``reply`` fails this expectation, or ``None`` when it holds (or when it is
        :attr:`judged`: the run's judge checks those)."""
        kind, value = self.kind, self.value
        text = reply.text
        if kind == "contains" and value.casefold() not in text.casefold():
            return f"expected the answer to contain {value!r}; it said {_quote(text)}"
        if kind == "not_contains" and value.casefold() in text.casefold():
            return f"expected the answer not to contain {value!r}; it said {_quote(text)}"
        if kind == "regex" and not re.search(value, text):
            return f"expected the answer to match /{value}/; it said {_quote(text)}"
        if kind == "trace_type" and value not in reply.trace_types:
            return f"expected a {value!r} trace; got {_listed(reply.trace_types)}"
        if kind == "button" and value.casefold() not in (b.casefold() for b in reply.buttons):
            return f"expected a button {value!r}; offered {_listed(reply.buttons)}"
        if kind == "no_reply" and (reply.messages or reply.buttons):
            said = _quote(text) if text else f"buttons {_listed(reply.buttons)}"
            return f"expected no reply; it said {said}"
        if kind == "latency_ms_below" and reply.latency_ms >= value:
            return f"expected an answer within {value} ms; it took {reply.latency_ms:.0f} ms"
        if isinstance(value, VariableCheck):
            return _variable_failure(value, variables or {})
        return None


def _variable_failure(check: VariableCheck, variables: dict[str, Any]) -> str | None:
    if check.name not in variables:
        return f"expected variable {check.name!r} to be set; known: {_listed(sorted(variables))}"
    actual = variables[check.name]
    if check.regex is not None:
        if not re.search(check.regex, str(actual)):
            return (
                f"expected variable {check.name!r} to match /{check.regex}/; it is {_short(actual)}"
            )
    elif actual != check.equals and str(actual) != str(check.equals):
        return f"expected variable {check.name!r} = {check.equals!r}; it is {_short(actual)}"
    return None


def _short(value: Any, limit: int = 200) -> str:
    """``repr(value)``, cut to ``limit`` characters: an answer is never pasted whole."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _listed(items: list[str], most: int = 20) -> str:
    """A list of names from an answer, each cut short and at most ``most`` of them."""
    shown = ", ".join(_short(item, 60) for item in items[:most])
    more = f", and {len(items) - most} more" if len(items) > most else ""
    return f"[{shown}{more}]"


def _quote(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


class Turn(BaseModel):
    """One step of a conversation: what the user does, and what the answer must show."""

    model_config = ConfigDict(frozen=True)

    kind: TurnKind
    value: Any = None
    expect: tuple[Expectation, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _from_mapping(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" not in data:
            kinds = [key for key in data if key != "expect"]
            if len(kinds) != 1:
                raise ValueError(
                    f"a turn has exactly one kind key ({', '.join(TURN_KINDS)}) besides "
                    f"'expect'; got {kinds or 'none'}"
                )
            kind = kinds[0]
            if kind not in TURN_KINDS:
                raise ValueError(f"unknown turn kind {kind!r}: use one of {', '.join(TURN_KINDS)}")
            return {"kind": kind, "value": data[kind], "expect": data.get("expect") or ()}
        return data

    @field_validator("expect", mode="before")
    @classmethod
    def _expect_is_a_list(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [value]  # a single expectation may be written without the list
        return value

    @model_validator(mode="after")
    def _value_fits_kind(self) -> Turn:
        kind, value = self.kind, self.value
        if kind in ("text", "button", "event"):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"'{kind}' takes a non-empty string")
        elif kind == "intent":
            if isinstance(value, str) and value:
                object.__setattr__(self, "value", {"name": value, "entities": {}})
            elif not (isinstance(value, dict) and isinstance(value.get("name"), str)):
                raise ValueError("'intent' takes a name, or {name: ..., entities: {...}}")
        elif kind in ("launch", "no_reply"):
            if value is None:
                object.__setattr__(self, "value", {})
            elif not isinstance(value, dict):
                raise ValueError(f"'{kind}' takes no value (write '{kind}: {{}}')")
        elif kind == "set_variables" and not (isinstance(value, dict) and value):
            raise ValueError("'set_variables' takes a mapping of variable names to values")
        return self

    @property
    def needs_variables(self) -> bool:
        """Whether checking this turn needs the session's variables read back."""
        return any(e.kind in Expectation.needs_variables for e in self.expect)

    @property
    def judged(self) -> tuple[Expectation, ...]:
        """Its expectations the run's judge checks."""
        return tuple(e for e in self.expect if e.judged)

    def describe(self) -> str:
        if self.kind in ("launch", "no_reply"):
            return self.kind
        return f"{self.kind}: {self.value!r}"
