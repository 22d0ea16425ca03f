"""A forecast before a big run: how many requests a suite needs, and how long they take.

Requests come from the provider's costs per start, turn and clean-up
(:attr:`~prefect_sessions.seam.provider.Provider.requests_for`), counted over every selected
conversation and its repeats, with no retry. The time is the requests over a rate: one given
(``--rate``), or the one the suite's last run reached (requests over its duration).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from prefect_sessions.conversation.budget import Budget
from prefect_sessions.conversation.dataset import Conversation, iter_runs
from prefect_sessions.conversation.suite import LoadedSuite
from prefect_sessions.providers import get_provider
from prefect_sessions.seam.provider import Provider


def conversation_requests(provider: Provider, conversation: Conversation, cleanup: bool) -> int:
    """Requests one run of ``conversation`` costs when nothing is retried (its named outputs'
    variables read included)."""
    reads = any(output.needs_variables for output in conversation.outputs.values())
    return provider.requests_for(conversation.turns, cleanup=cleanup, reads_variables=reads)


class Estimate(BaseModel):
    """What a run of a suite will cost."""

    conversations: int
    runs: int = Field(description="Conversation runs, repeats included.")
    requests: int = Field(description="Requests with no retry, clean-up included.")
    cleanup_requests: int = Field(description="Of those, what the suite's clean-up costs.")
    rate: float | None = Field(default=None, description="Requests per second assumed.")
    rate_source: str = ""
    seconds: float | None = None
    budget: Budget | None = Field(default=None, description="The run's caps, if any.")

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
        lines.extend(self._budget_lines())
        return lines

    def _budget_lines(self) -> list[str]:
        if self.budget is None:
            return []
        lines = []
        for cap, limit in self.budget.caps().items():
            if cap == "requests":
                within = self.requests <= limit
                verdict = "within it" if within else "over it: the run would stop before the end"
                lines.append(
                    f"budget: {self.requests} requests forecast against a cap of {limit:g}: "
                    f"{verdict}"
                )
            else:
                lines.append(
                    f"budget: {cap} capped at {limit:g}; it is reported at each conversation's "
                    "end, so the run stops when the next conversations could cross it"
                )
        return lines


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(
    loaded: LoadedSuite,
    rate: float | None = None,
    rate_source: str = "",
    budget: Budget | None = None,
) -> Estimate:
    """The requests of every selected conversation run, their time at ``rate``, against the
    suite's budget (with ``budget``'s caps on top)."""
    suite = loaded.suite
    provider = get_provider(suite.provider)
    requests = sum(
        conversation_requests(provider, conversation, suite.cleanup)
        for conversation in iter_runs(loaded)
    )
    caps = suite.budget.with_(budget) if suite.budget is not None else budget
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
        budget=caps,
    )
