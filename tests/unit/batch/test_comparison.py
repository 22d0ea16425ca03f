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
