"""A run against its baseline: what broke, what was fixed, what was added or removed."""

from __future__ import annotations

from prefect_sessions.batch.comparison import RunRecord, compare


def record(key: str, statuses: dict[str, str], **figures: float) -> RunRecord:
    return RunRecord(run_key=key, statuses=statuses, figures=figures)


def test_each_conversation_lands_in_one_list():
    baseline = record("k1", {"a": "passed", "b": "failed", "c": "errored", "gone": "passed"})
    current = record(
        "k2", {"a": "failed", "b": "passed", "c": "failed", "new": "errored", "ok": "passed"}
    )
    comparison = compare(baseline, current)
    assert comparison.baseline_run_key == "k1"
    assert comparison.newly_failing == ["a"]
    assert comparison.fixed == ["b"]
    assert comparison.still_failing == ["c"]
    assert comparison.added == ["new", "ok"]
    assert comparison.removed == ["gone"]
    assert comparison.regressions == ["a", "new"]


def test_a_selective_run_removes_nothing():
    comparison = compare(
        record("k1", {"a": "passed", "b": "passed"}), record("k2", {"a": "passed"}), partial=True
    )
    assert comparison.removed == []
    assert comparison.regressions == []


def test_figures_both_runs_have_are_compared_with_their_change():
    baseline = record("k1", {}, turn_p95_ms=100.0, requests=40.0, usage_credits=2.0)
    current = record("k2", {}, turn_p95_ms=150.0, requests=40.0, usage_credits=3.0, only_now=1.0)
    figures = compare(baseline, current).figures
    assert list(figures) == ["turn_p95_ms", "requests", "usage_credits"]
    assert figures["turn_p95_ms"].change == 50.0
    assert figures["turn_p95_ms"].relative == 0.5
    assert figures["turn_p95_ms"].describe() == "100 -> 150 (+50%)"
    assert figures["requests"].change == 0


def test_a_judged_score_that_fell_past_its_threshold_is_newly_failing_and_shown_as_a_change():
    from prefect_sessions.batch.report import comparison_markdown
    from prefect_sessions.batch.verdicts import verdicts
    from prefect_sessions.conversation.results import ConversationResult, TurnRecord
    from prefect_sessions.seam.judged import Judgement

    def run(score: float, status: str) -> ConversationResult:
        judged = Judgement(kind="judge", describe="judge 'r'", threshold=0.7, score=score)
        turn = TurnRecord(
            turn="text 'hi'", judgements=[judged.model_copy(update={"passed": score >= 0.7})]
        )
        return ConversationResult(id="balance", status=status, turns=[turn])

    steady = ConversationResult(id="greet", status="passed")
    before = RunRecord(
        run_key="k1",
        statuses={"balance": "passed", "greet": "passed"},
        scores={
            v.id: v.judge_score for v in verdicts([run(0.9, "passed"), steady]) if v.judge_score
        },
    )
    judged_now = verdicts([run(0.4, "failed"), steady])
    now = RunRecord(
        run_key="k2",
        statuses={v.id: v.status for v in judged_now},
        scores={v.id: v.judge_score for v in judged_now if v.judge_score is not None},
    )
    comparison = compare(before, now)
    assert comparison.newly_failing == ["balance"]
    assert list(comparison.score_changes) == ["balance"]
    assert comparison.score_changes["balance"].change == -0.5
    assert "| `balance` | 0.90 | 0.40 | -0.50 |" in comparison_markdown(comparison)
    # A move under SCORE_CHANGE is not a change worth a line.
    assert (
        compare(before, before.model_copy(update={"scores": {"balance": 0.88}})).score_changes == {}
    )
