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
from prefect_sessions.conversation.judging import JUDGE_SYSTEM, USER_SYSTEM
from prefect_sessions.conversation.suite import LoadedSuite
from prefect_sessions.providers import get_provider
from prefect_sessions.seam.provider import Provider
from prefect_sessions.seam.turns import Turn

#: What a forecast assumes an agent's reply holds, in characters (it is not known before).
REPLY_CHARACTERS = 400
#: A model answer's most tokens when the suite's judge_model does not say (the block's default).
DEFAULT_MAX_TOKENS = 512
#: Characters per token, as the engine estimates them before the endpoint corrects it.
CHARACTERS_PER_TOKEN = 4


def conversation_requests(provider: Provider, conversation: Conversation, cleanup: bool) -> int:
    """Requests one run of ``conversation`` costs when nothing is retried (its named outputs'
    variables read included; a simulated user's turns counted at their most)."""
    reads = any(output.needs_variables for output in conversation.outputs.values())
    turns = conversation.turns
    if conversation.simulate is not None:
        turns = (*turns, *[Turn(kind="text", value="?")] * conversation.simulate.max_turns)
    return provider.requests_for(turns, cleanup=cleanup, reads_variables=reads)


def judge_cost(conversation: Conversation, max_tokens: int) -> tuple[int, int]:
    """The judge model's calls and tokens for one run of ``conversation``, at their most: each
    call's prompt from its instructions, rubric and text (a reply taken as
    :data:`REPLY_CHARACTERS`), plus ``max_tokens``, as an endpoint counts them against its
    quota. ``similar`` scored offline costs nothing."""
    calls, characters = 0, 0
    for turn in conversation.turns:
        for expectation in turn.judged:
            if expectation.kind == "judge":
                calls += 1
                characters += len(JUDGE_SYSTEM) + len(expectation.value.rubric) + REPLY_CHARACTERS
    transcript = len(conversation.turns) * REPLY_CHARACTERS * 2
    spec = conversation.simulate
    if spec is not None:
        transcript += spec.max_turns * REPLY_CHARACTERS * 2
        per_turn = len(USER_SYSTEM) + sum(map(len, spec.facts)) + len(JUDGE_SYSTEM)
        calls += 2 * spec.max_turns  # a user turn and a goal check each
        characters += spec.max_turns * (per_turn + transcript // 2)
    for expectation in conversation.expect:
        if expectation.kind == "judge":
            calls += 1
            characters += len(JUDGE_SYSTEM) + len(expectation.value.rubric) + transcript
    return calls, characters // CHARACTERS_PER_TOKEN + calls * max_tokens


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
    judge_calls: int = Field(default=0, description="Calls to the judge model, at most.")
    judge_tokens: int = Field(default=0, description="Their tokens, at most.")

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
        if self.judge_calls:
            lines.append(
                f"judged: at most about {self.judge_calls} calls to the judge model and "
                f"{self.judge_tokens} tokens (a cached answer, or a simulated user that meets "
                "its goal early, costs less)"
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
            elif cap == "tokens" and self.judge_tokens:
                within = self.judge_tokens <= limit
                verdict = "within it" if within else "over it: the run may stop before the end"
                lines.append(
                    f"budget: at most about {self.judge_tokens} judge tokens forecast against a "
                    f"cap of {limit:g} tokens: {verdict}"
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
    requests = judge_calls = judge_tokens = 0
    judged = bool(suite.judged_kinds())
    max_tokens = (suite.judge_model and suite.judge_model.max_tokens) or DEFAULT_MAX_TOKENS
    for conversation in iter_runs(loaded):
        requests += conversation_requests(provider, conversation, suite.cleanup)
        if judged:
            calls, tokens = judge_cost(conversation, max_tokens)
            judge_calls, judge_tokens = judge_calls + calls, judge_tokens + tokens
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
        judge_calls=judge_calls,
        judge_tokens=judge_tokens,
    )
