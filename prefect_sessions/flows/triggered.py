"""The ``triggered-conversation`` flow: a conversation started by an event, its outcome sent
back as an event.

Deployed through the thin entrypoint ``flows/triggered_conversation.py``. In ``prefect.yaml`` a
deployment trigger on ``crm.ticket.created`` maps the event's user and payload onto the parameters;
the flow emits ``prefect-sessions.conversation.completed`` or ``.failed`` with the outcome, the
agent's last reply and the named outputs, related to its flow run (see
:mod:`prefect_sessions.conversation.triggered`). The flow run fails when the conversation did not
pass, after the event is sent.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from prefect_sessions.conversation.outputs import Output
from prefect_sessions.conversation.results import ConversationResult
from prefect_sessions.conversation.triggered import run_triggered_conversation
from prefect_sessions.flow_parameters import require_block_references
from prefect_sessions.providers import AnyCredentials
from prefect_sessions.seam.turns import Turn


@flow(name="triggered-conversation")
async def triggered_conversation(
    user_id: str,
    turns: list[Turn],
    credentials: AnyCredentials,
    variables: dict[str, Any] | None = None,
    provider_fields: dict[str, Any] | None = None,
    base_url: str | None = None,
    source_event_id: str | None = None,
    outputs: dict[str, Output] | None = None,
) -> ConversationResult:
    """Start a session for a user, take the configured turns, and emit the outcome as an event.

    Args:
        user_id: Who the conversation is with (from the event), e.g. the CRM's customer ID.
        turns: The steps to take, each with a kind (launch, text, button, event, intent,
            no_reply, set_variables), a value and optional expectations.
        credentials: The credentials block of the provider to talk to.
        variables: Session variables (from the event's payload), e.g. the customer's name.
        provider_fields: Settings the block does not hold: agent_key for Vectara; avatar_id,
            context_id or voice_agent_id, is_sandbox for LiveAvatar.
        base_url: Send requests here instead of the block's base URL.
        source_event_id: ID of the event that started the run, echoed in the outcome event.
        outputs: Named outputs to take from the conversation (as a suite's ``outputs:``, e.g.
            ``{"category": {"structured": "$.category"}}``), carried by the outcome event so an
            automation can route on them.
    """
    require_block_references("credentials")
    return await run_triggered_conversation(
        user_id=user_id,
        turns=turns,
        credentials=credentials,
        variables=variables,
        provider_fields=provider_fields,
        base_url=base_url,
        source_event_id=source_event_id,
        outputs=outputs,
    )
