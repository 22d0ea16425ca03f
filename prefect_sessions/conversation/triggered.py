"""One conversation started by an event, its outcome sent back as an event.

An automation (a deployment trigger on, say, ``crm.ticket.created``) starts a flow run with the
user and the variables from the event; :func:`run_triggered_conversation` opens a session for that
user with those variables, takes the configured turns with the suite models
(:class:`~prefect_sessions.seam.turns.Turn`, expectations included) through the provider's
conversation adapter, and emits one event:

- ``prefect-sessions.conversation.completed`` when every turn was taken and every expectation held;
- ``prefect-sessions.conversation.failed`` otherwise (an expectation failed, a step could not be
  taken, the provider failed, or the parameters cannot work with the provider).

The event's resource is the conversation (``prefect-sessions.conversation.<flow run id>``), related
to the flow run (and, through Prefect, its flow and deployment); its payload holds the outcome, the
reason, the agent's last reply and the triggering event's ID. Works with every provider whose
adapter takes turns (all three); which one is decided by the credentials block's type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.events import emit_event

from prefect_sessions.conversation.dataset import Conversation
from prefect_sessions.conversation.outputs import Output
from prefect_sessions.conversation.results import ConversationResult
from prefect_sessions.conversation.runner import run_conversation
from prefect_sessions.credentials import ProviderCredentials
from prefect_sessions.errors import ConfigurationError, PrefectSessionsError
from prefect_sessions.http.pacers import Pacers
from prefect_sessions.logs import run_logger
from prefect_sessions.providers import Provider, get_provider, provider_of
from prefect_sessions.seam.adapter import ConnectionSettings
from prefect_sessions.seam.turns import Turn

COMPLETED_EVENT = "prefect-sessions.conversation.completed"
FAILED_EVENT = "prefect-sessions.conversation.failed"
#: Longest reply kept in an event's payload (events are limited in size).
MAX_REPLY_CHARS = 4000


class ConversationNotCompleted(PrefectSessionsError):
    """The triggered conversation failed or errored; the ``.failed`` event has been emitted."""

    def __init__(self, result: ConversationResult) -> None:
        self.result = result
        super().__init__(f"conversation {result.id} {result.status}: {result.reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.result,))


def _check(
    spec: Provider,
    credentials: ProviderCredentials,
    turns: Sequence[Turn],
    fields: Mapping[str, Any],
) -> list[str]:
    """What keeps these turns and settings from working with this provider, each with the fix."""
    problems = []
    for number, turn in enumerate(turns, start=1):
        if turn.kind not in spec.turn_kinds:
            problems.append(
                f"turn {number}: {spec.name} does not take '{turn.kind}' turns; use one of "
                f"{', '.join(sorted(spec.turn_kinds))}"
            )
        problems.extend(
            f"turn {number}: {spec.name} cannot check '{e.kind}'; use one of "
            f"{', '.join(sorted(spec.expectation_kinds))}"
            for e in turn.expect
            if e.kind not in spec.expectation_kinds
        )
        problems.extend(
            f"turn {number}: '{e.kind}' needs a judge model, which a triggered conversation "
            "has not: put the conversation in a suite with judge_model, or check words instead"
            for e in turn.expect
            if e.judged
        )
    # A required setting may live on the block (Voiceflow's project_id) or in provider_fields
    # (Vectara's agent_key).
    problems.extend(
        f"{spec.name} needs '{name}': add it to provider_fields"
        for name in spec.required_connection
        if not fields.get(name) and not getattr(credentials, name, None)
    )
    known = set(spec.required_connection) | set(spec.optional_connection)
    problems.extend(
        f"provider_fields: unknown field '{name}' for {spec.name}; known: "
        f"{', '.join(sorted(known)) or 'none'}"
        for name in fields
        if name not in known
    )
    return problems


@task(name="run-conversation", cache_policy=NO_CACHE, persist_result=False)
async def converse(
    provider: str, settings: ConnectionSettings, conversation: Conversation
) -> ConversationResult:
    """Open a session, take the turns, check the expectations, end the session."""
    factory = get_provider(provider).adapter
    async with factory(settings) as adapter:
        return await run_conversation(adapter, conversation)


def last_reply(result: ConversationResult) -> str:
    """What the agent said last (the latest turn that got an answer), cut to fit an event."""
    for record in reversed(result.turns):
        if record.messages:
            text = "\n".join(record.messages)
            return text if len(text) <= MAX_REPLY_CHARS else text[: MAX_REPLY_CHARS - 3] + "..."
    return ""


#: Characters one output may take in an outcome event, and all of them together: an event stays
#: small, and an automation routes on short values (a category, a status), not on essays.
MAX_OUTPUT_CHARS = 2000
MAX_OUTPUTS_CHARS = 8000


def bounded_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The outputs for an event: a long text (or a long JSON value, as text) cut to
    :data:`MAX_OUTPUT_CHARS`, and no more outputs than fit :data:`MAX_OUTPUTS_CHARS`."""
    bounded: dict[str, Any] = {}
    room = MAX_OUTPUTS_CHARS
    for name, value in outputs.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if len(text) > MAX_OUTPUT_CHARS:
            value = text[: MAX_OUTPUT_CHARS - 3] + "..."
            text = value
        if len(text) > room:
            break
        bounded[name] = value
        room -= len(text)
    return bounded


def emit_outcome(
    result: ConversationResult,
    *,
    provider: str,
    user_id: str,
    source_event_id: str | None = None,
) -> None:
    """Emit ``.completed`` or ``.failed`` for a conversation, related to the current flow run."""
    context = FlowRunContext.get()
    flow_run = context.flow_run if context is not None else None
    conversation_id = str(flow_run.id) if flow_run is not None else result.id
    related: list[dict[str, str]] = []
    if flow_run is not None:
        related.append(
            {
                "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
                "prefect.resource.role": "flow-run",
                "prefect.resource.name": flow_run.name,
            }
        )
    emit_event(
        event=COMPLETED_EVENT if result.status == "passed" else FAILED_EVENT,
        resource={
            "prefect.resource.id": f"prefect-sessions.conversation.{conversation_id}",
            "prefect.resource.name": user_id,
            "prefect-sessions.provider": provider,
            "prefect-sessions.user-id": user_id,
        },
        related=related,
        payload={
            "outcome": result.status,
            "reason": result.reason,
            "error_type": result.error_type,
            "last_reply": last_reply(result),
            "user_id": user_id,
            "provider": provider,
            "turns_taken": len(result.turns),
            "attempts": result.attempts,
            "duration_ms": result.duration_ms,
            "source_event_id": source_event_id,
            "outputs": bounded_outputs(result.outputs),
            "output_notes": result.output_notes,
        },
    )


async def run_triggered_conversation(
    *,
    user_id: str,
    turns: Sequence[Turn],
    credentials: ProviderCredentials,
    variables: Mapping[str, Any] | None = None,
    provider_fields: Mapping[str, Any] | None = None,
    base_url: str | None = None,
    source_event_id: str | None = None,
    outputs: Mapping[str, Output] | None = None,
) -> ConversationResult:
    """Run one conversation for ``user_id`` and emit its outcome, with the named ``outputs``
    taken from it; call it inside a flow.

    Raises:
        ConversationNotCompleted: after the ``.failed`` event, when the conversation did not pass
            (so the flow run fails too).
    """
    logger = run_logger()
    provider = provider_of(credentials).name
    fields = dict(provider_fields or {})
    user_id = user_id.strip()
    origin = f"event {source_event_id}" if source_event_id else "a flow run"
    try:
        if not user_id:
            raise ConfigurationError(
                "user_id is empty: map it from the event, e.g. '{{ event.payload.user_id }}'"
            )
        if not turns:
            raise ConfigurationError("turns is empty: give at least one turn (e.g. launch)")
        spec = get_provider(provider)
        problems = _check(spec, credentials, turns, fields)
        problems += [
            f"outputs.{name}: {provider} has no '{output.kind}' to take an output from; use one "
            f"of {', '.join(sorted(spec.output_kinds))}"
            for name, output in (outputs or {}).items()
            if output.kind not in spec.output_kinds
        ]
        if problems:
            raise ConfigurationError("; ".join(problems))
        conversation = Conversation(
            id=user_id,
            variables=dict(variables or {}),
            turns=tuple(turns),
            origin=origin,
            outputs=dict(outputs or {}),
        )
        settings = ConnectionSettings(
            block=credentials, base_url=base_url, fields=fields, pacers=Pacers.for_run()
        )
        logger.info(
            "Conversation with %s on %s: %d turns, %d variables",
            user_id,
            provider,
            len(turns),
            len(conversation.variables),
        )
        result = await converse(provider, settings, conversation)
    except PrefectSessionsError as exc:
        result = ConversationResult(
            id=user_id or "(no user)",
            status="errored",
            reason=str(exc),
            error_type=type(exc).__name__,
            origin=origin,
        )
    emit_outcome(result, provider=provider, user_id=user_id, source_event_id=source_event_id)
    if result.status != "passed":
        logger.warning("Conversation with %s %s: %s", user_id, result.status, result.reason)
        raise ConversationNotCompleted(result)
    logger.info("Conversation with %s passed in %d turns", user_id, len(result.turns))
    return result
