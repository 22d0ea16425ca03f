"""A forecast before a big run: how many requests a suite needs, and how long they take.

Requests come from the provider's costs per start, turn and clean-up
(:attr:`~prefect_sessions.seam.provider.Provider.requests_for`), counted over every selected
conversation and its repeats, with no retry. The time is the requests over a rate: one given
(``--rate``), or the one the suite's last run reached (requests over its duration).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from prefect_sessions.conversation.dataset import iter_runs
from prefect_sessions.conversation.suite import LoadedSuite
from prefect_sessions.providers import get_provider


class Estimate(BaseModel):
    """What a run of a suite will cost."""

    conversations: int
    runs: int = Field(description="Conversation runs, repeats included.")
    requests: int = Field(description="Requests with no retry, clean-up included.")
    cleanup_requests: int = Field(description="Of those, what the suite's clean-up costs.")
    rate: float | None = Field(default=None, description="Requests per second assumed.")
    rate_source: str = ""
    seconds: float | None = None

    def lines(self) -> list[str]:
        runs = f" ({self.runs} runs with repeats)" if self.runs != self.conversations else ""
        lines = [
            f"{self.conversations} conversations{runs}: about {self.requests} requests, "
            f"{self.cleanup_requests} of them clean-up"
        ]
        if self.rate is not None and self.seconds is not None:
            lines.append(
                f"at {self.rate:g} requests/s ({self.rate_source}): about "
                f"{_duration(self.seconds)}, before retries"
            )
        else:
            lines.append(
                "no rate known: give --rate (the key's limit), or run the suite once so its "
                "rate can be learned"
            )
        return lines


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(loaded: LoadedSuite, rate: float | None = None, rate_source: str = "") -> Estimate:
    """The requests of every selected conversation run, and their time at ``rate``."""
    suite = loaded.suite
    provider = get_provider(suite.provider)
    requests = sum(
        provider.requests_for(conversation.turns, cleanup=suite.cleanup)
        for conversation in iter_runs(loaded)
    )
    cleanup = loaded.run_count * provider.cleanup_requests if suite.cleanup else 0
    seconds = requests / rate if rate else None
    return Estimate(
        conversations=loaded.conversation_count,
        runs=loaded.run_count,
        requests=requests,
        cleanup_requests=cleanup,
        rate=rate,
        rate_source=rate_source if rate else "",
        seconds=round(seconds, 1) if seconds is not None else None,
    )
