"""The HTML report is one offline page, and what agents said is text, never markup."""

from __future__ import annotations

import re

from prefect_sessions.batch.comparison import RunRecord, compare
from prefect_sessions.batch.html_report import html_report
from prefect_sessions.batch.report import RunSummary
from prefect_sessions.batch.verdicts import verdicts
from prefect_sessions.conversation.results import ConversationResult, TurnRecord


def test_the_page_is_self_contained_escaped_and_holds_charts_and_transcripts():
    hostile = "<script>alert(1)</script>"
    results = [
        ConversationResult(id="ok", status="passed", turns=[TurnRecord(turn="t", latency_ms=12)]),
        ConversationResult(
            id="bad",
            status="failed",
            reason=f"turn 1: it said {hostile}",
            turns=[TurnRecord(turn="text 'hi'", messages=[hostile], latency_ms=40, failures=["x"])],
        ),
    ]
    judged = verdicts(results)
    summary = RunSummary(
        suite="s",
        provider="voiceflow",
        run_key="k2",
        conversations=2,
        passed=1,
        failed=1,
        errored=0,
        requests=8,
        rate_limited=0,
        duration_s=1.0,
        results_path="r.jsonl",
    )
    summary.comparison = compare(
        RunRecord(run_key="k1", statuses={"ok": "passed", "bad": "passed"}),
        summary.record(judged),
    )
    page = html_report(summary, judged, results, run_url="http://127.0.0.1:4200/runs/flow-run/x")
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"(src|href)=['\"]https?://(?!127\.0\.0\.1)", page)  # nothing fetched
    assert 'id="latency-chart"' in page
    assert page.count('class="bar"') == 20
    assert 'id="pass-rate-chart"' in page
    assert "newly failing" in page
    assert "bad" in page
    assert "text &#x27;hi&#x27;" in page  # the failure's transcript, escaped
    assert 'id="prefect-run"' in page
