"""The scripted agent every emulated provider answers with, defined in YAML.

Deterministic by construction: the same text and variables always give the same turn, so tests
can assert on replies. See ``default_agent.yaml`` for the format (it is also the built-in agent).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class Button(BaseModel):
    """A button; choosing it runs ``intent``, or without one answers as if its label was typed.
    A button with ``url`` opens that web page instead (the agent never hears of it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    label: str = Field(min_length=1)
    intent: str | None = None
    url: str | None = None


class Choice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    buttons: tuple[Button, ...] = Field(min_length=1)


class Card(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    title: str
    description: str = ""
    image_url: str | None = None
    buttons: tuple[Button, ...] = ()


class Reply(BaseModel):
    """One reply; exactly one of ``text``, ``generate``, ``choice`` or ``card``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    text: str | None = None
    generate: str | None = None
    choice: Choice | None = None
    card: Card | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Reply:
        given = [name for name in ("text", "generate", "choice", "card") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(
                "a reply holds exactly one of 'text', 'generate', 'choice' or 'card'"
                f" (got {', '.join(given) or 'none'})"
            )
        return self


class Step(BaseModel):
    """What the agent does in a turn: replies, then variables to set, then maybe the end."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    replies: tuple[Reply, ...] = ()
    set: dict[str, str] = Field(default_factory=dict)
    end: bool = False


class Intent(Step):
    name: str = Field(min_length=1)
    patterns: tuple[str, ...] = Field(min_length=1)

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"pattern {pattern!r} is not a valid regular expression: {exc}"
                ) from None
        return patterns


ReplyKind = Literal["text", "generate", "choice", "card"]


@dataclass(frozen=True)
class RenderedReply:
    """A reply with its placeholders filled in, ready for a provider to shape."""

    kind: ReplyKind
    text: str = ""
    buttons: tuple[Button, ...] = ()
    title: str = ""
    image_url: str | None = None


@dataclass(frozen=True)
class Turn:
    """The agent's answer to one user action."""

    intent: str | None
    replies: tuple[RenderedReply, ...]
    variables: dict[str, Any] = field(default_factory=dict)
    ended: bool = False

    @property
    def text(self) -> str:
        """Every message of the turn as one string (what a text-only provider says)."""
        parts: list[str] = []
        for reply in self.replies:
            if reply.kind in ("text", "generate"):
                parts.append(reply.text)
            elif reply.kind == "card":
                parts.append(f"{reply.title}: {reply.text}" if reply.text else reply.title)
            if reply.buttons:
                parts.append("Options: " + "; ".join(b.label for b in reply.buttons) + ".")
        return "\n".join(parts)


def _fill(template: str, values: Mapping[str, Any]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(values[name]) if name in values else match.group(0)

    return _PLACEHOLDER.sub(one, template)


class AgentScript(BaseModel):
    """A scripted agent: a greeting, intents matched by pattern, a fallback, a no-reply prompt."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1, max_length=50)
    key: str = Field(default="agt_scripted", pattern=r"^[0-9a-zA-Z_-]{1,50}$")
    description: str = ""
    variables: dict[str, str] = Field(default_factory=dict)
    greeting: Step
    intents: tuple[Intent, ...] = ()
    fallback: Step
    no_reply: Step | None = None

    @model_validator(mode="after")
    def _buttons_lead_somewhere(self) -> AgentScript:
        names = {intent.name for intent in self.intents}
        for step in (self.greeting, self.fallback, self.no_reply, *self.intents):
            for reply in step.replies if step else ():
                buttons = (reply.choice.buttons if reply.choice else ()) + (
                    reply.card.buttons if reply.card else ()
                )
                for button in buttons:
                    if button.intent is not None and button.intent not in names:
                        raise ValueError(
                            f"button {button.label!r} leads to intent {button.intent!r}, "
                            f"which is not defined (known: {', '.join(sorted(names))})"
                        )
        return self

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "agent YAML") -> AgentScript:
        """Parse and check a script; errors name the source and the field at fault."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{source} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{source} must be a mapping with 'name', 'greeting' and 'fallback'")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ValueError(f"{source} is not a valid agent script:\n{exc}") from exc

    @classmethod
    def from_yaml_file(cls, path: str | Path) -> AgentScript:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read agent script {path}: {exc.strerror}") from exc
        return cls.from_yaml(text, source=str(path))

    @classmethod
    def default(cls) -> AgentScript:
        """The built-in customer-support agent (``default_agent.yaml``)."""
        text = resources.files(__package__).joinpath("default_agent.yaml").read_text("utf-8")
        return cls.from_yaml(text, source="default_agent.yaml")

    # -- answering ------------------------------------------------------------------------------

    def initial_variables(self) -> dict[str, Any]:
        return dict(self.variables)

    def launch(self, variables: Mapping[str, Any]) -> Turn:
        return self._run(self.greeting, None, variables, {})

    def no_reply_turn(self, variables: Mapping[str, Any]) -> Turn:
        return self._run(self.no_reply or self.fallback, None, variables, {})

    def intent_named(self, name: str) -> Intent | None:
        return next((intent for intent in self.intents if intent.name == name), None)

    def run_intent(self, name: str, variables: Mapping[str, Any]) -> Turn | None:
        intent = self.intent_named(name)
        return self._run(intent, intent.name, variables, {}) if intent else None

    def respond(self, text: str, variables: Mapping[str, Any]) -> Turn:
        """Answer what the user typed: the first intent with a matching pattern, else fallback."""
        for intent in self.intents:
            for pattern in intent.patterns:
                match = re.search(pattern, text, flags=re.IGNORECASE)
                if match:
                    groups = {k: v for k, v in match.groupdict().items() if v is not None}
                    return self._run(intent, intent.name, variables, groups)
        return self._run(self.fallback, None, variables, {})

    def _run(
        self,
        step: Step,
        intent: str | None,
        variables: Mapping[str, Any],
        groups: Mapping[str, str],
    ) -> Turn:
        values = {**variables, **groups}
        replies = tuple(self._render(reply, values) for reply in step.replies)
        updates = {name: _fill(value, values) for name, value in step.set.items()}
        return Turn(intent=intent, replies=replies, variables=updates, ended=step.end)

    @staticmethod
    def _render(reply: Reply, values: Mapping[str, Any]) -> RenderedReply:
        if reply.text is not None:
            return RenderedReply("text", _fill(reply.text, values))
        if reply.generate is not None:
            return RenderedReply("generate", _fill(reply.generate, values))
        if reply.choice is not None:
            return RenderedReply("choice", buttons=reply.choice.buttons)
        card = reply.card
        assert card is not None  # guaranteed by Reply._exactly_one
        return RenderedReply(
            "card",
            _fill(card.description, values),
            buttons=card.buttons,
            title=_fill(card.title, values),
            image_url=card.image_url,
        )


def split_for_streaming(text: str, words_per_piece: int = 3) -> list[str]:
    """Cut a generated answer into pieces as a model streams tokens; joined they give ``text``."""
    words = re.findall(r"\S+\s*", text)
    pieces = [
        "".join(words[i : i + words_per_piece]) for i in range(0, len(words), words_per_piece)
    ]
    return pieces or [text]
