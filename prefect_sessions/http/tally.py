"""The one count of requests: each attempt the engine sends, and each answered 429, counted once
into every tally open around it.

A run wants its requests in total, a report wants them per conversation, and conversations share
one client concurrently. The count therefore follows the asyncio context: the code that runs a
share of a suite opens a tally, the code that runs a conversation opens one inside it, and every
request sent from inside (tasks started there included, as they copy the context) is added to
each. A client's own :class:`~prefect_sessions.http.client.RequestStats` is one more tally the
engine counts into, so the per-request, per-conversation and per-run figures come from one place.
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

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.rate_limited += other.rate_limited


_open: ContextVar[tuple[Tally, ...]] = ContextVar("request_tallies", default=())


@contextmanager
def tallying(tally: Tally | None = None) -> Iterator[Tally]:
    """Count the requests sent inside the block into ``tally`` (a new one by default), and into
    every tally already open around it::

        with tallying() as run:
            with tallying() as conversation:
                await run_the_conversation()
        print(conversation.requests, run.requests)
    """
    tally = Tally() if tally is None else tally
    token = _open.set((*_open.get(), tally))
    try:
        yield tally
    finally:
        _open.reset(token)


@contextmanager
def tallying_apart(tally: Tally | None = None) -> Iterator[Tally]:
    """Count the requests sent inside the block into ``tally`` only, not into the tallies open
    around it: a conversation's calls to a judge model are not requests to its provider."""
    tally = Tally() if tally is None else tally
    token = _open.set((tally,))
    try:
        yield tally
    finally:
        _open.reset(token)


def count_attempt(*also: Tally) -> None:
    """Add one sent request to ``also`` and to every open tally (the HTTP engine calls this)."""
    for tally in (*also, *_open.get()):
        tally.requests += 1


def count_rate_limited(*also: Tally) -> None:
    """Add one answer 429 to ``also`` and to every open tally."""
    for tally in (*also, *_open.get()):
        tally.rate_limited += 1
