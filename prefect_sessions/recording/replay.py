"""Scripted turns taken on a fresh session, every answer kept: what ``crawl`` and
``run --update-expectations`` learn an agent's answers from.

Unlike a suite run, nothing is checked and nothing stops at a mismatch: each turn is taken and its
answer kept, and the session's variables are read after the turns that ask for them.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prefect_sessions.seam.adapter import ConversationAdapter
from prefect_sessions.seam.turns import Reply, Turn


@dataclass(frozen=True)
class Answered:
    """A turn's answer, and the session's variables after it when they were read."""

    reply: Reply
    variables: dict[str, Any] | None = None


async def replay(
    adapter: ConversationAdapter,
    name: str,
    turns: Sequence[Turn],
    *,
    variables: Mapping[str, Any] | None = None,
    read_variables: Collection[int] = (),
) -> list[Answered]:
    """Take ``turns`` on a new session (its user a fresh ID, so replays may run side by side);
    read the variables after the turns numbered in ``read_variables`` (from 0).

    Raises:
        ConversationFailure: a turn could not be taken (a button that was not offered).
        ProviderError: the provider failed beyond the engine's retries.
    """
    session = await adapter.start(f"{name[:80]}-{secrets.token_hex(4)}", dict(variables or {}))
    answers: list[Answered] = []
    try:
        for number, turn in enumerate(turns):
            reply = await adapter.turn(session, turn)  # an adapter takes turns; it checks nothing
            read = await adapter.variables(session) if number in read_variables else None
            answers.append(Answered(reply, read))
    finally:
        await adapter.end(session)
    return answers
