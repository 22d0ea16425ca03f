"""A run's budget: no conversation starts that could cross a cap."""

from __future__ import annotations

import pytest

from prefect_sessions.conversation.budget import Budget, BudgetGuard, BudgetSpentError


class _Conversation:
    def __init__(self, requests: int) -> None:
        self.requests = requests


def guard(budget: Budget, earlier=()) -> BudgetGuard:
    return BudgetGuard(budget, lambda c: c.requests, earlier=earlier)  # type: ignore[attr-defined]


def test_requests_count_what_was_spent_what_is_in_flight_and_the_next():
    budget = guard(Budget(requests=10))
    first, second, third = _Conversation(4), _Conversation(4), _Conversation(4)
    budget.admit(first)
    budget.admit(second)  # 8 in flight
    with pytest.raises(BudgetSpentError, match="budget of 10 requests would be crossed"):
        budget.admit(third)
    budget.count(first, 3, {})  # it cost less than forecast
    budget.count(second, 4, {})
    with pytest.raises(BudgetSpentError, match="7 spent, about 4 more"):
        budget.admit(third)
    budget.admit(_Conversation(3))  # exactly at the cap is allowed


def test_a_resumed_run_counts_what_its_earlier_attempts_spent():
    budget = guard(Budget(requests=10), earlier=[(4.0, {}), (5.0, {})])
    with pytest.raises(BudgetSpentError, match="9 spent"):
        budget.admit(_Conversation(2))


def test_usage_caps_use_the_mean_of_finished_conversations():
    budget = guard(Budget(credits=5))
    one, two = _Conversation(1), _Conversation(1)
    budget.admit(one)  # nothing finished yet: no estimate, it starts
    budget.count(one, 1, {"credits": 2.0})
    budget.admit(two)  # 2 spent + 2 expected = 4
    with pytest.raises(BudgetSpentError, match="budget of 5 LiveAvatar credits"):
        budget.admit(_Conversation(1))  # 2 + 2 x 2 in flight = 6


def test_tokens_count_what_providers_and_judges_report():
    budget = guard(Budget(tokens=100))
    one = _Conversation(1)
    budget.admit(one)
    budget.count(one, 1, {"context_tokens": 40, "judge_tokens": 30})
    with pytest.raises(BudgetSpentError, match="70 spent"):
        budget.admit(_Conversation(1))


def test_budgets_combine_and_split():
    suite = Budget(requests=100, credits=10)
    assert suite.with_(Budget(requests=50)).caps() == {"requests": 50.0, "credits": 10.0}
    assert suite.shared(3).caps() == {"requests": 33.0, "credits": 10 / 3}
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        Budget(requests=0)
