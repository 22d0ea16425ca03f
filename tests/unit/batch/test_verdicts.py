"""Verdicts over repeated runs, flakiness, causes and latency figures."""

from __future__ import annotations

from prefect_sessions.batch.report import causes, conversation_row
from prefect_sessions.batch.verdicts import digest, percentile, verdicts
from prefect_sessions.conversation.results import ConversationResult, TurnRecord


def run(id_: str, status: str, repetition: int = 1, repeats: int = 1, pass_rate: float = 1.0, **kw):
    return ConversationResult(
        id=id_,
        status=status,
        repetition=repetition,
        repeats=repeats,
        pass_rate=pass_rate,
        **kw,
    )


def test_a_conversation_run_once_has_the_verdict_of_its_run():
    judged = verdicts([run("a", "passed"), run("b", "failed", reason="r"), run("c", "errored")])
    assert [(v.id, v.status, v.flaky) for v in judged] == [
        ("a", "passed", False),
        ("b", "failed", False),
        ("c", "errored", False),
    ]
    assert judged[1].reason == "r"


def test_a_repeated_conversation_passes_by_its_pass_rate_and_is_flaky_when_mixed():
    results = [
        run("a", "passed", 1, 5, 0.8),
        run("a", "passed", 2, 5, 0.8),
        run("a", "failed", 3, 5, 0.8, reason="turn 1: no"),
        run("a", "passed", 4, 5, 0.8),
        run("a", "passed", 5, 5, 0.8),
        run("b", "passed", 1, 5, 0.8),
        run("b", "failed", 2, 5, 0.8),
        run("b", "failed", 3, 5, 0.8),
        run("b", "passed", 4, 5, 0.8),
        run("b", "passed", 5, 5, 0.8),
    ]
    a, b = verdicts(results)
    assert (a.status, a.passes, a.runs, a.flaky, a.reason) == ("passed", 4, 5, True, None)
    assert (b.status, b.passes, b.flaky) == ("failed", 3, True)
    assert b.observed_pass_rate == 0.6


def test_the_latest_result_of_a_run_counts_after_a_resume():
    judged = verdicts(
        [run("a", "errored", 1, 2), run("a", "passed", 2, 2), run("a", "passed", 1, 2)]
    )
    assert (judged[0].status, judged[0].runs, judged[0].passes) == ("passed", 2, 2)


def test_runs_that_only_errored_give_an_errored_verdict():
    (verdict,) = verdicts([run("a", "errored", 1, 2, error_type="X"), run("a", "errored", 2, 2)])
    assert verdict.status == "errored"
    assert verdict.cause == "error X"


def test_failures_are_grouped_by_expectation_kind_and_error_type():
    failed_turn = TurnRecord(turn="text 'hi'", failures=["nope"], failed_kinds=["contains"])
    results = [
        run("a", "failed", turns=[failed_turn]),
        run("b", "failed", turns=[failed_turn]),
        run("c", "errored", error_type="ProviderUnavailableError"),
        run("d", "failed", turns=[TurnRecord(turn="button 'x'", failures=["no button"])]),
        run("e", "passed"),
    ]
    assert causes(verdicts(results)) == [
        ("expectation 'contains'", 2, ["a", "b"]),
        ("error ProviderUnavailableError", 1, ["c"]),
        ("step could not be taken", 1, ["d"]),
    ]


def test_percentiles_and_latency_figures():
    assert percentile([], 0.95) == 0.0
    assert percentile(list(range(1, 101)), 0.95) == 95
    assert percentile([10.0, 20.0], 0.5) == 10.0
    results = [
        run(
            "a",
            "passed",
            duration_ms=100,
            turns=[TurnRecord(turn="t", latency_ms=x) for x in (10, 30)],
        ),
        run("b", "passed", duration_ms=300, turns=[TurnRecord(turn="t", latency_ms=20)]),
    ]
    figures = digest(results).latency
    assert (figures.turn_p50_ms, figures.turn_p95_ms) == (20, 30)
    assert (figures.conversation_p50_ms, figures.conversation_p95_ms) == (100, 300)


def test_the_conversation_table_has_a_row_per_conversation_with_its_first_failure():
    rows = [
        conversation_row(verdict)
        for verdict in verdicts(
            [
                run("a", "passed", 1, 2, tags=["x"]),
                run("a", "failed", 2, 2, reason="r" * 400, tags=["x"]),
            ]
        )
    ]
    assert len(rows) == 1
    row = rows[0]
    assert (row["id"], row["status"], row["runs"], row["tags"]) == (
        "a",
        "failed",
        "1/2 passed",
        "x",
    )
    assert len(row["first_failure"]) == 300


def test_a_digest_holds_the_verdicts_the_latency_and_only_what_did_not_pass(tmp_path):
    from prefect_sessions.batch.verdicts import digest
    from prefect_sessions.conversation.results import ResultStore

    latency = [TurnRecord(turn="t", latency_ms=10)]
    store = ResultStore(tmp_path / "results.jsonl")
    written = [
        run("c", "errored", position=3, turns=latency),  # retried below: the later line counts
        run("a", "passed", 1, 2, 0.5, position=0, turns=latency),
        run("b", "failed", position=2, reason="no", turns=latency),
        run("a", "failed", 2, 2, 0.5, position=1, reason="flaky"),  # a passes by its rate
        run("c", "failed", position=3, reason="first", turns=latency),
        run("d", "passed", position=4, turns=latency),
    ]
    for result in written:
        store.append(result)
    with store.path.open("a") as handle:
        handle.write('{"id": "cut-by-a-ki')
    digested = digest(store.in_order())
    assert [(v.id, v.status, v.flaky) for v in digested.verdicts] == [
        ("a", "passed", True),
        ("b", "failed", False),
        ("c", "failed", False),
        ("d", "passed", False),
    ]
    # The transcripts a person reads: the first run of each conversation that did not pass.
    assert [(r.id, r.reason) for r in digested.failing] == [("b", "no"), ("c", "first")]
    assert digested.latency.turn_p50_ms == 10
    assert [(v.id, v.status) for v in verdicts(written)] == [
        ("c", "failed"),
        ("a", "passed"),
        ("b", "failed"),
        ("d", "passed"),
    ]


def test_the_conversation_table_as_json_text_is_the_table():
    import json

    from prefect_sessions.batch.report import conversation_table_json

    judged = verdicts([run("a", "passed", tags=["x", "y"]), run("b", "failed", reason="r")])
    assert json.loads(conversation_table_json(judged)) == [conversation_row(v) for v in judged]
    assert json.loads(conversation_table_json([])) == []
    assert judged[0].as_json()["tags"] == ["x", "y"]
