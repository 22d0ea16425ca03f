"""Requests counted per piece of work (one conversation), whichever client sent them.

A run's clients count their requests in total; a report also wants them per conversation, and
conversations share one client concurrently. The count therefore follows the asyncio context:
the code that runs a conversation opens a tally, and every request sent from inside it (tasks it
starts included, as they copy the context) is added to that tally.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class Tally:
    """Requests sent (each attempt, retries included) and how many were answered 429."""

    requests: int = 0
    rate_limited: int = 0


_current: ContextVar[Tally | None] = ContextVar("request_tally", default=None)


@contextmanager
def tallying() -> Iterator[Tally]:
    """Count the requests sent inside the block::

    with tallying() as tally:
        await run_the_conversation()
    print(tally.requests)
    """
    tally = Tally()
    token = _current.set(tally)
    try:
        yield tally
    finally:
        _current.reset(token)


def count_attempt() -> None:
    """Add one sent request to the open tally, if any (the HTTP engine calls this)."""
    tally = _current.get()
    if tally is not None:
        tally.requests += 1


def count_rate_limited() -> None:
    """Add one answer 429 to the open tally, if any."""
    tally = _current.get()
    if tally is not None:
        tally.rate_limited += 1
