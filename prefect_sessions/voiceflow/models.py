"""Voiceflow's Conversations API as pydantic models: actions in, traces out, state in between.

Field names follow the wire format (``diagramID``, ``completionEvents``); Python names are
snake_case aliases where they differ. Responses tolerate fields we do not know, and a trace of a
type we do not model (or of an unexpected shape) is kept whole as a plain :class:`Trace`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError

UserID = Annotated[str, StringConstraints(min_length=1, max_length=256)]
"""A Voiceflow user ID: 1 to 256 characters, one conversation state per user."""


class _Wire(BaseModel):
    """Models that round-trip with the API: aliases on the wire, extra fields kept."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    def to_wire(self) -> dict[str, Any]:
        """The JSON body as the API expects it (aliases, no unset optional fields)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# -- actions (what the user did) ----------------------------------------------------------------


class Action(_Wire):
    """One user action. Use the subclasses, or this class for any other ``type`` (custom-action
    path events such as ``"success"``, or v4 types like ``"end"``)."""

    type: str = Field(min_length=1, description="The action type, e.g. 'text' or 'launch'.")
    payload: Any = None
    diagram_id: str | None = Field(default=None, alias="diagramID")
    time: int | None = None
    metadata: dict[str, Any] | None = None


class LaunchPayload(_Wire):
    persona: str | None = None


class LaunchAction(Action):
    """Start (or restart) the conversation from the agent's start block."""

    type: Literal["launch"] = "launch"
    payload: LaunchPayload | None = None


class TextAction(Action):
    """A typed or spoken user message."""

    type: Literal["text"] = "text"
    payload: str = Field(min_length=1, description="What the user said.")


class Entity(_Wire):
    name: str
    value: str
    query: str | None = None


class IntentName(_Wire):
    name: str = Field(min_length=1)


class IntentPayload(_Wire):
    intent: IntentName
    query: str = ""
    entities: list[Entity] = Field(default_factory=list)
    confidence: float | None = None


class IntentAction(Action):
    """An intent recognised outside Voiceflow (your own NLU)."""

    type: Literal["intent"] = "intent"
    payload: IntentPayload

    @classmethod
    def named(cls, name: str, *, query: str = "", entities: Iterable[Entity] = ()) -> IntentAction:
        """``IntentAction.named("order_status", query="where is my order")``."""
        return cls(
            payload=IntentPayload(intent=IntentName(name=name), query=query, entities=[*entities])
        )


class EventName(_Wire):
    name: str = Field(min_length=1)


class EventPayload(_Wire):
    event: EventName


class EventAction(Action):
    """A system event that fires an event trigger in the agent."""

    type: Literal["event"] = "event"
    payload: EventPayload

    @classmethod
    def named(cls, name: str) -> EventAction:
        """``EventAction.named("checkout_completed")``."""
        return cls(payload=EventPayload(event=EventName(name=name)))


class NoReplyAction(Action):
    """The user said nothing before the agent's no-reply timeout."""

    type: Literal["no-reply"] = "no-reply"
    payload: None = None


class PathPayload(_Wire):
    label: str
    actions: list[dict[str, Any]] | None = None


class PathAction(Action):
    """A button press: the ``request`` a choice or card button carries, sent back verbatim."""

    type: str = Field(pattern=r"^path-", description="The button's path ID, 'path-...'.")
    payload: PathPayload


class EndAction(Action):
    """End the conversation, as Voiceflow's own runtime SDK does when its client disconnects."""

    type: Literal["end"] = "end"
    payload: None = None


# The v4 action list names the next four types, but the vendor has not published their payloads
# (the schemas behind its interact pages are collapsed): each payload is sent exactly as given.


class MessageAction(Action):
    """A message from a channel (v4). Its payload is sent as given."""

    type: Literal["message"] = "message"


class FileAction(Action):
    """A file the user sent (v4). Its payload is sent as given."""

    type: Literal["file"] = "file"


class DTMFAction(Action):
    """Keypad tones on a voice call (v4). Its payload is sent as given."""

    type: Literal["dtmf"] = "dtmf"


class LiveAgentHandoffAction(Action):
    """Continue after a live-agent handoff trace, when the human agent hands the user back (v4).
    Its payload is sent as given."""

    type: Literal["live-agent-handoff"] = "live-agent-handoff"


AnyAction = (
    LaunchAction
    | TextAction
    | IntentAction
    | EventAction
    | NoReplyAction
    | PathAction
    | EndAction
    | MessageAction
    | FileAction
    | DTMFAction
    | LiveAgentHandoffAction
    | Action
)


class TurnConfig(_Wire):
    """Per-turn settings (``config`` in the interact body). Unknown keys are passed through."""

    completion_events: bool | None = Field(
        default=None,
        alias="completionEvents",
        description="Stream generated answers as completion start/content/end traces.",
    )
    tts: bool | None = Field(default=None, description="Generate speech for speak traces.")
    strip_ssml: bool | None = Field(default=None, alias="stripSSML")
    stop_all: bool | None = Field(default=None, alias="stopAll")
    stop_types: list[str] | None = Field(default=None, alias="stopTypes")
    exclude_types: list[str] | None = Field(default=None, alias="excludeTypes")
    self_delegate: bool | None = Field(default=None, alias="selfDelegate")
    user_timezone: str | None = Field(default=None, alias="userTimezone")


class InteractRequest(_Wire):
    """The body of ``POST /v4/interact`` (and ``/v4/interact/stream``)."""

    action: Action
    variables: dict[str, Any] | None = Field(
        default=None, description="Variables set on the session before this turn runs."
    )
    state: Any = None
    config: TurnConfig | None = None

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"action": self.action.to_wire()}
        if self.variables is not None:
            body["variables"] = self.variables
        if self.state is not None:
            body["state"] = self.state
        if self.config is not None:
            body["config"] = self.config.to_wire()
        return body


# -- traces (what the agent did) ----------------------------------------------------------------


class Trace(_Wire):
    """One step of the agent's response. Typed subclasses exist for the documented types; any other
    type, or a documented type in an unexpected shape, stays a plain ``Trace`` with every field."""

    trace_type: ClassVar[str | None] = None

    type: str
    payload: Any = None
    paths: list[dict[str, Any]] | None = None
    default_path: int | None = Field(default=None, alias="defaultPath")
    time: float | None = None
    turn_id: str | None = Field(default=None, alias="turnID")
    handle_id: str | None = Field(default=None, alias="handleID")


class TextPayload(_Wire):
    message: str = ""
    slate: Any = None
    delay: int | None = None
    message_id: str | None = Field(default=None, alias="messageID")


class TextTrace(Trace):
    trace_type = "text"
    payload: TextPayload


class SpeakPayload(_Wire):
    type: str | None = None
    message: str = ""
    src: str | None = None
    voice: str | None = None


class SpeakTrace(Trace):
    trace_type = "speak"
    payload: SpeakPayload


class VisualPayload(_Wire):
    visual_type: str | None = Field(default=None, alias="visualType")
    image: str | None = None


class VisualTrace(Trace):
    trace_type = "visual"
    payload: VisualPayload


class Button(_Wire):
    """A button of a choice, card or carousel; pressing it sends ``request`` back as the action."""

    name: str
    request: dict[str, Any]

    def as_action(self) -> Action:
        """The action that presses this button."""
        return Action.model_validate(self.request)

    @property
    def url(self) -> str | None:
        """The web page it opens, for a URL button (an ``open_url`` action in its request)."""
        payload = self.request.get("payload")
        actions = payload.get("actions") if isinstance(payload, dict) else None
        for action in actions if isinstance(actions, list) else ():
            if isinstance(action, dict) and action.get("type") == "open_url":
                url = (action.get("payload") or {}).get("url")
                return str(url) if url else ""
        return None


class ChoicePayload(_Wire):
    buttons: list[Button] = Field(default_factory=list)


class ChoiceTrace(Trace):
    trace_type = "choice"
    payload: ChoicePayload


class CardDescription(_Wire):
    text: str = ""


class CardPayload(_Wire):
    title: str | None = None
    image_url: str | None = Field(default=None, alias="imageUrl")
    description: CardDescription | None = None
    buttons: list[Button] = Field(default_factory=list)


class CardV2Trace(Trace):
    trace_type = "cardV2"
    payload: CardPayload


class CarouselPayload(_Wire):
    layout: str | None = None
    cards: list[CardPayload] = Field(default_factory=list)


class CarouselTrace(Trace):
    trace_type = "carousel"
    payload: CarouselPayload


class NoReplyPayload(_Wire):
    timeout: float | None = None


class NoReplyTrace(Trace):
    trace_type = "no-reply"
    payload: NoReplyPayload | None = None


class EndTrace(Trace):
    trace_type = "end"


class FlowTrace(Trace):
    trace_type = "flow"


class BlockTrace(Trace):
    trace_type = "block"


class DebugPayload(_Wire):
    type: str | None = None
    message: str = ""


class DebugTrace(Trace):
    trace_type = "debug"
    payload: DebugPayload


class CompletionPayload(_Wire):
    state: Literal["start", "content", "end"]
    content: str | None = None
    message_id: str | None = Field(
        default=None, alias="messageID", description="The same for every piece of one message."
    )


class CompletionTrace(Trace):
    """A piece of a generated answer streamed with ``completionEvents``."""

    trace_type = "completion"
    payload: CompletionPayload


class KnowledgeBaseTrace(Trace):
    trace_type = "knowledgeBase"


class ReasoningTrace(Trace):
    """The agent's reasoning (v4); its payload is kept as sent."""

    trace_type = "reasoning"


class ToolCallTrace(Trace):
    """The agent called a tool (v4); its payload is kept as sent."""

    trace_type = "tool-call"


class AudioPayload(_Wire):
    state: str | None = None
    message_id: str | None = Field(default=None, alias="messageID")
    delay: int | None = None


class AudioTrace(Trace):
    """A piece of the agent's audio (v4, with audio events on)."""

    trace_type = "audio"
    payload: AudioPayload


class PathTrace(Trace):
    """The conversation took a path (v4); its payload is kept as sent."""

    trace_type = "path"


class CallForwardTrace(Trace):
    """A voice call is forwarded (v4); its payload is kept as sent."""

    trace_type = "call-forward"


_TRACE_TYPES: dict[str, type[Trace]] = {
    cls.trace_type: cls
    for cls in (
        TextTrace,
        SpeakTrace,
        VisualTrace,
        ChoiceTrace,
        CardV2Trace,
        CarouselTrace,
        NoReplyTrace,
        EndTrace,
        FlowTrace,
        BlockTrace,
        DebugTrace,
        CompletionTrace,
        KnowledgeBaseTrace,
        ReasoningTrace,
        ToolCallTrace,
        AudioTrace,
        PathTrace,
        CallForwardTrace,
    )
    if cls.trace_type
}


def parse_trace(data: Any) -> Trace:
    """Read one trace; a typed model when its type is known and its shape fits, else kept whole.

    Raises:
        ValueError: ``data`` is not a JSON object with a string ``type``.
    """
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ValueError(f"a trace must be a JSON object with a string 'type', got {_brief(data)}")
    model = _TRACE_TYPES.get(data["type"], Trace)
    try:
        return model.model_validate(data)
    except ValidationError:
        return Trace.model_validate(data)


def _brief(data: Any) -> str:
    text = json.dumps(data, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


# -- the result of a turn -----------------------------------------------------------------------


class TurnResult(BaseModel):
    """The agent's answer to one action: its traces, and what a person would read from them."""

    traces: list[Trace] = Field(default_factory=list)
    latency_ms: float | None = Field(
        default=None, description="How long the provider took to answer (the last attempt)."
    )

    @property
    def messages(self) -> list[str]:
        """What the agent said, in order: text and speak messages, and each completion assembled
        from its start/content/end pieces."""
        said: list[str] = []
        pieces: list[str] | None = None
        for trace in self.traces:
            if isinstance(trace, TextTrace | SpeakTrace) and trace.payload.message:
                said.append(trace.payload.message)
            elif isinstance(trace, CompletionTrace):
                state = trace.payload.state
                if state == "start":
                    pieces = []
                elif state == "content":
                    pieces = (pieces or []) + [trace.payload.content or ""]
                elif pieces is not None:
                    said.append("".join(pieces))
                    pieces = None
        if pieces:  # a completion that never got its end piece still said something
            said.append("".join(pieces))
        return said

    @property
    def text(self) -> str:
        """All messages joined by newlines."""
        return "\n".join(self.messages)

    @property
    def buttons(self) -> list[Button]:
        """The buttons offered by this turn's choice, card and carousel traces."""
        found: list[Button] = []
        for trace in self.traces:
            if isinstance(trace, ChoiceTrace | CardV2Trace):
                found.extend(trace.payload.buttons)
            elif isinstance(trace, CarouselTrace):
                for card in trace.payload.cards:
                    found.extend(card.buttons)
        return found

    @property
    def ended(self) -> bool:
        """Whether the agent ended the conversation in this turn."""
        return any(trace.type == "end" for trace in self.traces)

    @property
    def trace_types(self) -> list[str]:
        """The type of every trace, in order (what logs and reports show)."""
        return [trace.type for trace in self.traces]


# -- state ----------------------------------------------------------------------------------------


class StackFrame(_Wire):
    diagram_id: str | None = Field(default=None, alias="diagramID")
    node_id: str | None = Field(default=None, alias="nodeID")
    name: str | None = None
    storage: dict[str, Any] = Field(default_factory=dict)
    variables: dict[str, Any] = Field(default_factory=dict)


class State(_Wire):
    """A user's conversation state: the flow stack, storage and variables."""

    turn: dict[str, Any] | None = None
    stack: list[StackFrame] = Field(default_factory=list)
    storage: dict[str, Any] = Field(default_factory=dict)
    variables: dict[str, Any] = Field(default_factory=dict)


# -- a session ----------------------------------------------------------------------------------


class VoiceflowSession(BaseModel):
    """A started v4 session. ``session_key`` is a credential: it authorises interact calls."""

    model_config = ConfigDict(frozen=True)

    user_id: UserID
    session_key: SecretStr = Field(repr=False)
    project_id: str
    environment: str | None = Field(
        default=None, description="The environment alias, or None for the traffic-split route."
    )
