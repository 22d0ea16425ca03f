"""Vectara Agents sessions and events as pydantic models.

Requests are validated before anything is sent, with messages that name the field and the fix.
Responses tolerate fields we do not know. An event of a type we do not model is kept whole as an
:class:`UnknownEvent`, never dropped and never an exception.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

# The spec's pattern is `[0-9a-zA-Z_-]+$` without a leading `^`, so it would accept "a/b c". Keys go
# into URL paths, so ours is anchored: a stray slash must fail here, not hit another endpoint.
KEY_PATTERN = re.compile(r"^[0-9a-zA-Z_-]{1,50}$")
"""Agent and session keys: 1 to 50 letters, digits, ``_`` or ``-``."""

_PATH_SAFE = re.compile(r"^[0-9a-zA-Z_-]{1,200}$")


def check_key(value: str, field: str) -> str:
    """Return ``value`` if it is a valid agent or session key, else raise ``ValueError``."""
    if not isinstance(value, str) or not KEY_PATTERN.fullmatch(value):
        raise ValueError(
            f"{field} {value!r} is not a valid Vectara key: use 1 to 50 letters, digits, '_' or "
            "'-' (no spaces or slashes), e.g. 'support_session_12345'"
        )
    return value


def check_event_id(value: str) -> str:
    """Return ``value`` if it can be an event ID (``aev_...``), else raise ``ValueError``."""
    if not isinstance(value, str) or not _PATH_SAFE.fullmatch(value):
        raise ValueError(
            f"event_id {value!r} is not a valid Vectara event ID: use the 'id' of an event "
            "(letters, digits, '_' or '-', e.g. 'aev_user_001')"
        )
    return value


class _Request(BaseModel):
    """A request body: unknown fields are refused, so a typo fails before anything is sent."""

    model_config = ConfigDict(extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        """The JSON body as the API expects it (no unset optional fields)."""
        return self.model_dump(mode="json", exclude_none=True)


class _Response(BaseModel):
    """A response body: fields we do not model are kept (``model_extra``), never refused."""

    model_config = ConfigDict(extra="allow")


# -- sessions -----------------------------------------------------------------------------------


class InputTokens(_Response):
    """Input tokens of an agent call, cached ones included."""

    count: int | None = None
    cached_tokens: int | None = None


class OutputTokens(_Response):
    """Output tokens of an agent call."""

    count: int | None = None
    reasoning_tokens: int | None = None


class SessionContextUsage(_Response):
    """Tokens of the session's most recent agent call (not a running total)."""

    input_tokens: InputTokens | None = None
    output_tokens: OutputTokens | None = None
    total_tokens: int | None = None
    model_context_window: int | None = None


class CreateSessionRequest(_Request):
    """The body of *create session* (``CreateAgentSessionRequest``)."""

    name: str = Field(min_length=1, description="Human-readable name for the session.")
    key: str | None = Field(
        default=None,
        description="Your own session key; Vectara generates one from the name when absent.",
    )
    description: str | None = Field(default=None, description="What the session is for.")
    metadata: dict[str, Any] | None = Field(
        default=None, description="Arbitrary metadata; instructions and tools can read it."
    )
    enabled: bool | None = Field(default=None, description="Whether the session accepts input.")
    tti_minutes: int | None = Field(
        default=None,
        ge=0,
        description="Idle minutes before Vectara deletes the session; 0 means never.",
    )
    from_session: str | None = Field(
        default=None,
        description="Fork: the key of a session of the same agent whose history this one starts "
        "with.",
    )

    @field_validator("key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return None if value is None else check_key(value, "key")


class UpdateSessionRequest(_Request):
    """The body of *update session* (``UpdateAgentSessionRequest``): only what changes."""

    name: str | None = Field(default=None, min_length=1)
    description: str | None = None
    metadata: dict[str, Any] | None = Field(
        default=None, description="Replaces the session's metadata."
    )
    enabled: bool | None = None
    tti_minutes: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _something_changes(self) -> UpdateSessionRequest:
        if not self.to_wire():
            raise ValueError(
                "nothing to update: give at least one of name, description, metadata, enabled "
                "or tti_minutes"
            )
        return self


class AgentSession(_Response):
    """A session (``AgentSession``): the conversation container of one agent."""

    key: str
    agent_key: str
    # Optional although the spec lists `name` as required: the docs' list example omits it.
    name: str | None = None
    description: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    tti_minutes: int | None = None
    created_at: datetime | None = None
    status: str | None = Field(
        default=None,
        description="'unstarted', 'running' while the agent produces events, or 'stopped'.",
    )
    current_step_name: str | None = Field(
        default=None, description="The step the session resumes at on the next message."
    )
    session_context_usage: SessionContextUsage | None = None
    created_by_agent_key: str | None = Field(
        default=None, description="The agent whose sub-agent tool created this session."
    )
    created_by_session_key: str | None = None

    @property
    def running(self) -> bool:
        """Whether the agent is producing events now (a new input would be refused with 409)."""
        return self.status == "running"


class SessionPage(_Response):
    """One page of *list sessions*; ``page_key`` is ``None`` on the last page."""

    sessions: list[AgentSession]
    page_key: str | None = None


# -- input ---------------------------------------------------------------------------------------


class TextInput(_Response):
    """One text input of a message (``AgentTextInput``)."""

    type: str = "text"
    content: str = ""


#: How an input sent to a running session is taken: ``steer`` on the agent loop's next
#: iteration, or ``follow_up`` as a turn of its own after the current one.
InputBehavior = Literal["steer", "follow_up"]
_SINCE = r"^(start|aev_[0-9a-zA-Z_-]+)$"


class InputMessage(_Request):
    """The body of *send message* (``CreateInputMessageRequest``).

    ``since`` (an event ID, or ``"start"``) queues the message on a session that is already
    running, instead of the 409 Vectara answers otherwise; the answer then holds every event
    after ``since``. ``behavior`` says how the queued message is taken.
    """

    type: Literal["input_message"] = "input_message"
    messages: list[TextInput] = Field(min_length=1)
    stream_response: bool = False
    since: str | None = Field(default=None, pattern=_SINCE)
    behavior: InputBehavior | None = None

    @classmethod
    def text(cls, *texts: str, stream: bool = False) -> InputMessage:
        """``InputMessage.text("Where is my order?")``: one text input per argument."""
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(
                    "a message must be non-empty text: pass what the user says, e.g. "
                    "send_message(..., 'Where is my order?')"
                )
        if not texts:
            raise ValueError("give at least one text to send, e.g. 'Where is my order?'")
        return cls(messages=[TextInput(content=text) for text in texts], stream_response=stream)


class Interrupt(_Request):
    """Cancel what the agent is doing (``CreateInterruptRequest``); it answers with a
    ``session_interrupted`` event."""

    type: Literal["interrupt"] = "interrupt"
    stream_response: bool = False


class Compact(_Request):
    """Compact the session's history (``CreateCompactRequest``); queued while it runs."""

    type: Literal["compact"] = "compact"
    stream_response: bool = False
    compact_up_to_event_id: str | None = None
    compaction_message: str | None = None


class ToolOutput(_Request):
    """The result of one client tool call (``CreateToolOutputSuccess``/``Error``), answering the
    ``tool_input`` event ``event_id``: give ``output`` or ``error``."""

    event_id: str = Field(min_length=1)
    type: Literal["success", "error"] = "success"
    output: dict[str, Any] | None = None
    error: str | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_result(self) -> ToolOutput:
        if (self.type == "success") != (self.output is not None) or (
            self.type == "error" and self.error is None
        ):
            raise ValueError("a tool output has 'output' (type success) or 'error' (type error)")
        return self


class ToolOutputs(_Request):
    """Deliver client tool results (``ClientToolOutputRequest``), one per pending call listed
    by the ``client_tool_pending`` event."""

    type: Literal["tool_output"] = "tool_output"
    stream_response: bool = False
    tool_outputs: list[ToolOutput] = Field(min_length=1)


#: Any input a session takes.
AgentInput = InputMessage | Interrupt | Compact | ToolOutputs


# -- events (stored, and returned by send message / list events / get event) ----------------------


class _Event(_Response):
    id: str | None = None
    session_key: str | None = None
    created_at: datetime | None = None


class InputMessageEvent(_Event):
    """What the user sent."""

    type: Literal["input_message"] = "input_message"
    messages: list[TextInput] = Field(default_factory=list)


class ArtifactReference(_Response):
    """A file uploaded to the session's workspace."""

    artifact_id: str | None = None
    filename: str | None = None
    mime_type: str | None = None
    size_bytes: int | None = None


class ArtifactUploadEvent(_Event):
    """Files were uploaded to the session as artifacts."""

    type: Literal["artifact_upload"] = "artifact_upload"
    artifacts: list[ArtifactReference] = Field(default_factory=list)


class ToolInputEvent(_Event):
    """The agent called a tool."""

    type: Literal["tool_input"] = "tool_input"
    tool_call_id: str | None = None
    tool_configuration_name: str | None = None
    tool_name: str | None = None
    tool_input: dict[str, Any] = Field(default_factory=dict)


class ToolOutputEvent(_Event):
    """A tool answered the agent."""

    type: Literal["tool_output"] = "tool_output"
    tool_call_id: str | None = None
    tool_configuration_name: str | None = None
    tool_name: str | None = None
    tool_output: dict[str, Any] = Field(default_factory=dict)


class ThinkingEvent(_Event):
    """The agent's reasoning."""

    type: Literal["thinking"] = "thinking"
    content: str | None = None


class AgentOutputEvent(_Event):
    """A complete answer of the agent."""

    type: Literal["agent_output"] = "agent_output"
    content: str = ""


class ContextLimitExceededEvent(_Event):
    """The request exceeded the model's context limit."""

    type: Literal["context_limit_exceeded"] = "context_limit_exceeded"
    message: str | None = None
    context_limit: int | None = None
    actual_tokens: int | None = None


class ImageReadEvent(_Event):
    """An image artifact was loaded into the conversation."""

    type: Literal["image_read"] = "image_read"
    artifact_id: str | None = None
    detail: str | None = None


class StructuredOutputEvent(_Event):
    """The agent's complete answer as JSON conforming to its output parser's schema (instead of
    an ``agent_output``, for agents configured with a structured output parser)."""

    type: Literal["structured_output"] = "structured_output"
    schema_name: str | None = None
    content: Any = None

    @property
    def text(self) -> str:
        """The answer as JSON text (what a text expectation reads)."""
        return self.content if isinstance(self.content, str) else json.dumps(self.content)


class SkillLoadEvent(_Event):
    """A skill's content was loaded into the conversation."""

    type: Literal["skill_load"] = "skill_load"
    skill_name: str | None = None
    content: str | None = None


class StepTransitionEvent(_Event):
    """The agent moved from one step to another."""

    type: Literal["step_transition"] = "step_transition"
    from_step: str | None = None
    to_step: str | None = None
    content: str | None = None


class StepTransitionLimitExceededEvent(_Event):
    """Too many step transitions (a loop between steps?); not stored."""

    type: Literal["step_transition_limit_exceeded"] = "step_transition_limit_exceeded"
    transition_limit: int | None = None
    message: str | None = None


class SessionInterruptedEvent(_Event):
    """The session was interrupted at the user's request; not stored."""

    type: Literal["session_interrupted"] = "session_interrupted"


class ClientToolPendingCall(_Response):
    """A client tool call awaiting its output. Its arguments are kept out of its repr: the
    vendor sends secret-derived values unmasked, for the client to run the tool with."""

    event_id: str
    tool_configuration_name: str | None = None
    tool_name: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict, repr=False)


class ClientToolPendingEvent(_Event):
    """The agent waits for client tool outputs (send them with ``ToolOutputs``); not stored."""

    type: Literal["client_tool_pending"] = "client_tool_pending"
    pending_calls: list[ClientToolPendingCall] = Field(default_factory=list)


class CompactionEvent(_Event):
    """Context compaction completed."""

    type: Literal["compaction"] = "compaction"
    turns_compacted: int | None = None
    events_compacted: int | None = None
    summary_text: str | None = None
    summary_key: str | None = None


class CompactionStartedEvent(_Event):
    """Context compaction started (streamed only)."""

    type: Literal["compaction_started"] = "compaction_started"


class ContextConsumedEvent(_Response):
    """How much of the context window the agent call used (streamed only)."""

    type: Literal["context_consumed"] = "context_consumed"
    session_context_usage: SessionContextUsage | None = None
    created_at: datetime | None = None


class UnknownEvent(_Response):
    """An event of a type this package does not model (yet), kept whole in ``model_extra``."""

    type: str = ""


# -- stream-only events ---------------------------------------------------------------------------


class StreamingAgentOutput(_Response):
    """A chunk of the agent's answer."""

    type: Literal["streaming_agent_output"] = "streaming_agent_output"
    content: str = ""
    created_at: datetime | None = None


class StreamingAgentOutputEnd(_Response):
    """The agent's streamed answer is complete."""

    type: Literal["streaming_agent_output_end"] = "streaming_agent_output_end"
    created_at: datetime | None = None


class StreamingThinking(_Response):
    """A chunk of the agent's reasoning."""

    type: Literal["streaming_thinking"] = "streaming_thinking"
    content: str = ""
    created_at: datetime | None = None


class StreamingThinkingEnd(_Response):
    """The agent's streamed reasoning is complete."""

    type: Literal["streaming_thinking_end"] = "streaming_thinking_end"
    created_at: datetime | None = None


class StreamError(_Response):
    """The agent failed while answering; the stream's client raises :class:`AgentStreamError`."""

    type: Literal["error"] = "error"
    messages: list[str] = Field(default_factory=list)


class StreamEnd(_Response):
    """The last event of every stream."""

    type: Literal["end"] = "end"


def _tag(known: frozenset[str]) -> Any:
    def tag(value: Any) -> str:
        if isinstance(value, UnknownEvent):  # a known type of unexpected shape stays unknown
            return "unknown"
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        return kind if isinstance(kind, str) and kind in known else "unknown"

    return tag


_STORED: dict[str, type[BaseModel]] = {
    "input_message": InputMessageEvent,
    "skill_load": SkillLoadEvent,
    "artifact_upload": ArtifactUploadEvent,
    "tool_input": ToolInputEvent,
    "tool_output": ToolOutputEvent,
    "thinking": ThinkingEvent,
    "agent_output": AgentOutputEvent,
    "structured_output": StructuredOutputEvent,
    "context_limit_exceeded": ContextLimitExceededEvent,
    "step_transition_limit_exceeded": StepTransitionLimitExceededEvent,
    "session_interrupted": SessionInterruptedEvent,
    "client_tool_pending": ClientToolPendingEvent,
    "image_read": ImageReadEvent,
    "step_transition": StepTransitionEvent,
    "compaction": CompactionEvent,
}
# The stream has the stored events, its chunks and ends, and three of its own.
_STREAMED: dict[str, type[BaseModel]] = {
    **_STORED,
    "streaming_agent_output": StreamingAgentOutput,
    "streaming_agent_output_end": StreamingAgentOutputEnd,
    "streaming_thinking": StreamingThinking,
    "streaming_thinking_end": StreamingThinkingEnd,
    "context_consumed": ContextConsumedEvent,
    "compaction_started": CompactionStartedEvent,
    "error": StreamError,
    "end": StreamEnd,
}


def _keep_whole(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate as the union says; on a mismatch keep the event whole as an UnknownEvent."""
    try:
        return handler(value)
    except ValidationError:
        # A known type whose fields do not fit our model (a vendor change): keep it rather than
        # fail a conversation over it.
        raw = value.model_dump() if isinstance(value, BaseModel) else value
        if not isinstance(raw, dict):
            return UnknownEvent(value=raw)
        return UnknownEvent.model_validate({**raw, "type": str(raw.get("type", ""))})


AgentEvent = Annotated[
    Annotated[InputMessageEvent, Tag("input_message")]
    | Annotated[SkillLoadEvent, Tag("skill_load")]
    | Annotated[ArtifactUploadEvent, Tag("artifact_upload")]
    | Annotated[ToolInputEvent, Tag("tool_input")]
    | Annotated[ToolOutputEvent, Tag("tool_output")]
    | Annotated[ThinkingEvent, Tag("thinking")]
    | Annotated[AgentOutputEvent, Tag("agent_output")]
    | Annotated[StructuredOutputEvent, Tag("structured_output")]
    | Annotated[ContextLimitExceededEvent, Tag("context_limit_exceeded")]
    | Annotated[StepTransitionLimitExceededEvent, Tag("step_transition_limit_exceeded")]
    | Annotated[SessionInterruptedEvent, Tag("session_interrupted")]
    | Annotated[ClientToolPendingEvent, Tag("client_tool_pending")]
    | Annotated[ImageReadEvent, Tag("image_read")]
    | Annotated[StepTransitionEvent, Tag("step_transition")]
    | Annotated[CompactionEvent, Tag("compaction")]
    | Annotated[UnknownEvent, Tag("unknown")],
    Discriminator(_tag(frozenset(_STORED))),
    WrapValidator(_keep_whole),
]
"""Any event stored in a session; an unmodelled ``type`` becomes an :class:`UnknownEvent`."""

StreamEvent = Annotated[
    Annotated[InputMessageEvent, Tag("input_message")]
    | Annotated[SkillLoadEvent, Tag("skill_load")]
    | Annotated[ArtifactUploadEvent, Tag("artifact_upload")]
    | Annotated[ToolInputEvent, Tag("tool_input")]
    | Annotated[ToolOutputEvent, Tag("tool_output")]
    | Annotated[ThinkingEvent, Tag("thinking")]
    | Annotated[AgentOutputEvent, Tag("agent_output")]
    | Annotated[StructuredOutputEvent, Tag("structured_output")]
    | Annotated[ContextLimitExceededEvent, Tag("context_limit_exceeded")]
    | Annotated[StepTransitionLimitExceededEvent, Tag("step_transition_limit_exceeded")]
    | Annotated[SessionInterruptedEvent, Tag("session_interrupted")]
    | Annotated[ClientToolPendingEvent, Tag("client_tool_pending")]
    | Annotated[ImageReadEvent, Tag("image_read")]
    | Annotated[StepTransitionEvent, Tag("step_transition")]
    | Annotated[CompactionEvent, Tag("compaction")]
    | Annotated[StreamingAgentOutput, Tag("streaming_agent_output")]
    | Annotated[StreamingAgentOutputEnd, Tag("streaming_agent_output_end")]
    | Annotated[StreamingThinking, Tag("streaming_thinking")]
    | Annotated[StreamingThinkingEnd, Tag("streaming_thinking_end")]
    | Annotated[ContextConsumedEvent, Tag("context_consumed")]
    | Annotated[CompactionStartedEvent, Tag("compaction_started")]
    | Annotated[StreamError, Tag("error")]
    | Annotated[StreamEnd, Tag("end")]
    | Annotated[UnknownEvent, Tag("unknown")],
    Discriminator(_tag(frozenset(_STREAMED))),
    WrapValidator(_keep_whole),
]
"""Any event of a streamed answer; an unmodelled ``type`` becomes an :class:`UnknownEvent`."""

_AGENT_EVENT: TypeAdapter[AgentEvent] = TypeAdapter(AgentEvent)
_STREAM_EVENT: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)


def parse_event(payload: Any) -> AgentEvent:
    """One stored event from its JSON; never raises, whatever the server sent."""
    return _AGENT_EVENT.validate_python(payload)


def parse_stream_event(payload: Any) -> StreamEvent:
    """One streamed event from its JSON ``data``; never raises, whatever the server sent."""
    return _STREAM_EVENT.validate_python(payload)


class EventPage(_Response):
    """One page of *list events*; ``page_key`` is ``None`` on the last page."""

    events: list[AgentEvent]
    page_key: str | None = None


# -- replies --------------------------------------------------------------------------------------


class MessageReply(_Response):
    """What the agent did with one message: its output events and its final answer.

    Attributes:
        session_key: the session the message went to.
        text: the agent's final answer: the last ``agent_output`` or ``structured_output`` (its
            JSON as text), or, streamed, the last run of ``streaming_agent_output`` chunks;
            empty when the agent gave none.
        events: the events the agent produced, in order. The echoed ``input_message`` is left
            out. A streamed reply holds the stream's tool, context and image events, and
            its output and thinking chunks are folded into ``text``.
        input_event_id: the ID of the stored ``input_message`` event, when the server returned it.
    """

    session_key: str
    text: str = ""
    events: list[AgentEvent] = Field(default_factory=list)
    input_event_id: str | None = None
    context_usage: SessionContextUsage | None = Field(
        default=None, description="The context the agent call used (a streamed answer says)."
    )

    @property
    def outputs(self) -> list[AgentOutputEvent]:
        """The agent's complete answers, in order."""
        return [event for event in self.events if isinstance(event, AgentOutputEvent)]

    @property
    def structured(self) -> Any:
        """The last structured answer's JSON (agents with a structured output parser), or
        ``None``."""
        found = [event for event in self.events if isinstance(event, StructuredOutputEvent)]
        return found[-1].content if found else None

    @classmethod
    def from_events(cls, session_key: str, events: list[AgentEvent]) -> MessageReply:
        """Build a reply from the events *send message* returned (input echo included)."""
        outputs = [event for event in events if not isinstance(event, InputMessageEvent)]
        inputs = [event for event in events if isinstance(event, InputMessageEvent)]
        answers = [
            event.content if isinstance(event, AgentOutputEvent) else event.text
            for event in outputs
            if isinstance(event, AgentOutputEvent | StructuredOutputEvent)
        ]
        return cls(
            session_key=session_key,
            text=answers[-1] if answers else "",
            events=outputs,
            input_event_id=inputs[-1].id if inputs else None,
        )


STORED_EVENT_TYPES: tuple[type[BaseModel], ...] = (*_STORED.values(), UnknownEvent)
