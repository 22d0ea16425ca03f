"""What a run may spend: requests, LiveAvatar credits and minutes, tokens.

A suite (``budget:``), a run (``--budget-requests``, the flow's ``budget``) or the pipeline step
caps what a run spends. Before each conversation starts, the run asks whether starting it could
cross a cap, counting what the run already spent (earlier attempts of the same run key
included), what the conversations in flight will spend, and what this one will:

- requests: each conversation's forecast (its provider's costs per start, turn and end), exact
  when nothing is retried;
- credits, session minutes and tokens: the mean of what the finished conversations spent (the
  provider reports them only at the end).

When a cap could be crossed, no new conversation starts; those in flight finish; the run stops
with :class:`BudgetSpentError`, one line naming the budget, and is resumable: a resumed run counts
what it already spent, so raise the cap to go on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from prefect_sessions.errors import RunStoppedError

#: The usage amounts (as providers report them per conversation) each cap counts.
USAGE_OF_CAP = {
    "credits": ("credits",),
    "session_minutes": ("session_minutes",),
    "tokens": ("context_tokens", "judge_tokens"),
}


class Budget(BaseModel):
    """Caps on what a run spends (each optional)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests: int | None = Field(default=None, ge=1, description="HTTP requests, retries included.")
    credits: float | None = Field(default=None, gt=0, description="LiveAvatar credits.")
    session_minutes: float | None = Field(
        default=None, gt=0, description="LiveAvatar session minutes."
    )
    tokens: int | None = Field(
        default=None, ge=1, description="Tokens, where a provider (or a judge model) reports them."
    )

    def caps(self) -> dict[str, float]:
        """The caps that are set, by name."""
        return {name: float(value) for name, value in self if value is not None}

    def with_(self, other: Budget | None) -> Budget:
        """This budget with ``other``'s caps on top (a run's over its suite's)."""
        if other is None:
            return self
        return self.model_copy(update=other.model_dump(exclude_none=True))

    def shared(self, shares: int) -> Budget:
        """Each of ``shares`` shards' part of this budget."""
        if shares <= 1:
            return self
        return self.model_copy(
            update={
                name: (type(getattr(self, name)))(getattr(self, name) / shares)
                for name in self.caps()
            }
        )


class BudgetSpentError(RunStoppedError):
    """Starting another conversation could cross a cap of the run's budget."""


@dataclass
class Spent:
    """What a run spent: requests, and each usage amount, over its finished conversations."""

    requests: float = 0.0
    usage: dict[str, float] = field(default_factory=dict)
    finished: int = 0

    def add(self, requests: float, usage: Mapping[str, float]) -> None:
        self.requests += requests
        for name, amount in usage.items():
            self.usage[name] = self.usage.get(name, 0.0) + amount
        self.finished += 1

    def of(self, cap: str) -> float:
        if cap == "requests":
            return self.requests
        return sum(self.usage.get(name, 0.0) for name in USAGE_OF_CAP[cap])


class BudgetGuard:
    """Asked before each conversation starts; told what each one spent when it ends.

    Args:
        budget: the caps.
        forecast: the requests a conversation will cost (its provider's forecast).
        earlier: what earlier attempts of the run spent (``(requests, usage)`` per result).
    """

    def __init__(
        self,
        budget: Budget,
        forecast: Callable[[object], int],
        earlier: Iterable[tuple[float, Mapping[str, float]]] = (),
    ) -> None:
        self.budget = budget
        self._forecast = forecast
        self._lock = threading.Lock()
        self.spent = Spent()
        for requests, usage in earlier:
            self.spent.add(requests, usage)
        self._in_flight: dict[int, int] = {}

    def admit(self, conversation: object) -> None:
        """Let ``conversation`` start, or stop the run.

        Raises:
            BudgetSpentError: starting it could cross a cap; the message names the cap.
        """
        forecast = self._forecast(conversation)
        with self._lock:
            caps = self.budget.caps()
            flying = len(self._in_flight) + 1
            for cap, limit in caps.items():
                spent = self.spent.of(cap)
                if cap == "requests":
                    coming = float(sum(self._in_flight.values()) + forecast)
                else:
                    each = spent / self.spent.finished if self.spent.finished else 0.0
                    coming = each * flying
                if spent + coming > limit:
                    raise BudgetSpentError(
                        f"the budget of {_amount(limit)} {_noun(cap)} would be crossed: "
                        f"{_amount(spent)} spent, about {_amount(coming)} more for the "
                        "conversations in flight and the next; raise the budget to go on"
                    )
            self._in_flight[id(conversation)] = forecast

    def count(self, conversation: object, requests: float, usage: Mapping[str, float]) -> None:
        """``conversation`` ended, having spent ``requests`` and ``usage``."""
        with self._lock:
            self._in_flight.pop(id(conversation), None)
            self.spent.add(requests, usage)

    def release(self, conversation: object) -> None:
        """``conversation`` ended without a result (the run stopped meanwhile)."""
        with self._lock:
            self._in_flight.pop(id(conversation), None)


def _noun(cap: str) -> str:
    return {"session_minutes": "LiveAvatar session minutes", "credits": "LiveAvatar credits"}.get(
        cap, cap
    )


def _amount(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


__all__ = ["USAGE_OF_CAP", "Budget", "BudgetGuard", "BudgetSpentError", "Spent"]
