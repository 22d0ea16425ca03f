"""The nightly-regression user's loop through ``prefect-sessions``, on a real Prefect server and
the emulator over real HTTP: failed runs look failed, each run is compared with the last, reruns
take only what failed, repeats measure flakiness, and bad input sends nothing."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterTags,
)

from prefect_sessions.batch.report import RunSummary
from prefect_sessions.cli import main

pytestmark = pytest.mark.usefixtures("prefect_server")

PASSES = "[{launch: {}, expect: [{contains: Welcome}]}]"
FAILS = '[{launch: {}, expect: [{contains: "no such words"}]}]'


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("NIGHTLY_KEY", "VF.DM.nightly-test")


def write_suite(path: Path, url: str, conversations: str, extra: str = "") -> Path:
    path.write_text(
        textwrap.dedent(
            f"""\
            name: {path.stem}
            provider: voiceflow
            connection: {{base_url: "{url}", api_key_env: NIGHTLY_KEY, project_id: demo}}
            concurrency: 1
            {extra}
            conversations:
            """
        )
        + textwrap.indent(textwrap.dedent(conversations), "  "),
        encoding="utf-8",
    )
    return path


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(
        main, [*argv, "--progress", "none"] if argv[0] == "run" else list(argv)
    )


def report(path: Path) -> dict:
    return json.loads(path.read_text())


async def test_each_run_is_compared_with_the_last_and_a_regression_fails_it(
    tmp_path, emulator, capsys
):
    suite = tmp_path / "nightly-compare.yaml"
    write_suite(
        suite,
        emulator.url,
        f"""\
        - {{id: a, turns: {PASSES}}}
        - {{id: b, turns: {FAILS}}}
        - {{id: c, turns: {PASSES}}}
        """,
    )
    first = tmp_path / "first.json"
    common = ["--results-dir", str(tmp_path / "runs")]
    assert (
        await cli("run", str(suite), "--run-key", "night-1", "--report", str(first), *common) == 1
    )
    assert report(first)["comparison"] is None
    assert "No earlier run of this suite" in capsys.readouterr().out

    # The next night: a broke, b was fixed, c left the suite, d joined it.
    write_suite(
        suite,
        emulator.url,
        f"""\
        - {{id: a, turns: {FAILS}}}
        - {{id: b, turns: {PASSES}}}
        - {{id: d, turns: {PASSES}}}
        """,
    )
    second = tmp_path / "second.json"
    html = tmp_path / "night-2.html"
    code = await cli(
        "run",
        str(suite),
        "--run-key",
        "night-2",
        "--fail-on",
        "regressions",
        "--report",
        str(second),
        "--html",
        str(html),
        *common,
    )
    assert code == 1  # a is newly failing
    comparison = report(second)["comparison"]
    assert {
        k: comparison[k]
        for k in ("baseline_run_key", "newly_failing", "fixed", "still_failing", "added", "removed")
    } == {
        "baseline_run_key": "night-1",
        "newly_failing": ["a"],
        "fixed": ["b"],
        "still_failing": [],
        "added": ["d"],
        "removed": ["c"],
    }
    assert comparison["figures"]["turn_p95_ms"]["baseline"] > 0
    assert report(second)["latency"]["conversation_p95_ms"] > 0
    out = capsys.readouterr().out
    assert "Compared against run night-1: 1 newly failing, 1 fixed" in out
    assert f"HTML report: {html.resolve()}" in out
    page = html.read_text()
    assert "newly failing" in page
    assert 'id="pass-rate-chart"' in page

    # The flow run itself ended Failed, with its summary readable from its state.
    async with get_client() as client:
        (run,) = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["run-key:night-2"]))
        )
        artifacts = {
            a.key
            for a in await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="nightly-compare-"))
            )
        }
        tasks = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
    assert run.state.is_failed()
    assert "1 regressions against run night-1" in run.state.message
    summary = await run.state.aresult(raise_on_failure=False)
    assert RunSummary.model_validate(summary).comparison.newly_failing == ["a"]
    assert {"nightly-compare-conversations", "nightly-compare-comparison"} <= artifacts
    # The UI's task list says which conversations each chunk ran.
    assert [task.name for task in tasks] == ["3 conversations: a to d"]

    # `compare` finds both runs through the API and gates on regressions; fail_on never passes.
    assert await cli("compare", "night-1", "night-2", "--suite", str(suite)) == 1
    assert "newly failing: a" in capsys.readouterr().out
    assert await cli("compare", "night-2", "night-2", "--suite", "nightly-compare") == 0
    assert await cli("run", str(suite), "--fail-on", "never", "--baseline", "night-1", *common) == 0
    assert "against run night-1" in capsys.readouterr().out


async def test_reruns_take_only_what_failed_or_what_is_tagged(tmp_path, emulator, capsys):
    (tmp_path / "rows.csv").write_text("user,tags\nu1,vip\nu2,\nu3,vip\n")
    suite = write_suite(
        tmp_path / "nightly-select.yaml",
        emulator.url,
        f"""\
        - {{id: ok, tags: [smoke], turns: {PASSES}}}
        - {{id: broken, turns: {FAILS}}}
        - id: "row-{{{{ row.user }}}}"
          dataset: rows.csv
          turns: {PASSES}
        """,
    )
    common = ["--results-dir", str(tmp_path / "runs"), "--baseline", "none"]
    assert await cli("run", str(suite), "--run-key", "all", *common) == 1

    rerun = tmp_path / "rerun.json"
    before = emulator.count("requests")
    assert (
        await cli("run", str(suite), "--only-failed", "all", "--report", str(rerun), *common) == 1
    )
    assert [c["id"] for c in report(rerun)["conversations"]] == ["broken"]
    assert report(rerun)["summary"]["selection"] == "run all"
    assert emulator.count("requests") - before == 2  # one session start, one launch

    tagged = tmp_path / "tagged.json"
    assert (
        await cli(
            "run", str(suite), "--tag", "vip", "--tag", "smoke", "--report", str(tagged), *common
        )
        == 0
    )
    assert sorted(c["id"] for c in report(tagged)["conversations"]) == ["ok", "row-u1", "row-u3"]
    globbed = tmp_path / "globbed.json"
    assert await cli("run", str(suite), "--id", "row-u[12]", "--report", str(globbed), *common) == 0
    assert sorted(c["id"] for c in report(globbed)["conversations"]) == ["row-u1", "row-u2"]

    # Bad input: exit 2, the field named, nothing sent.
    capsys.readouterr()
    before = emulator.count("requests")
    assert await cli("run", str(suite), "--tag", "nightly", *common) == 2
    assert (
        "--tag nightly matches no conversation of the suite (its tags: smoke, vip)"
        in capsys.readouterr().err
    )
    assert await cli("run", str(suite), "--id", "zzz-*", *common) == 2
    assert await cli("run", str(suite), "--only-failed", "no-such-run", *common) == 2
    assert (
        "--only-failed: no finished run of suite 'nightly-select' has run key 'no-such-run'"
        in capsys.readouterr().err
    )
    assert (
        await cli("run", str(suite), "--baseline", "no-such-run", "--results-dir", str(tmp_path))
        == 2
    )
    assert "baseline: no finished run" in capsys.readouterr().err
    assert await cli("compare", "all", "no-such-run", "--suite", str(suite)) == 2
    assert emulator.count("requests") == before


async def test_repeats_measure_flakiness_share_the_run_and_resume(tmp_path, emulator):
    suite = write_suite(
        tmp_path / "nightly-repeat.yaml",
        emulator.url,
        f"""\
        - {{id: shaky, repeat: 3, pass_rate: 0.6, turns: {PASSES}}}
        - {{id: steady, turns: {PASSES}}}
        """,
        extra="repeat: 2",
    )
    # Concurrency 1, in suite order: shaky's first run meets both faults (an answer that does not
    # parse, on its attempt and on its one restart) and errors; its other two runs pass, and so
    # do steady's two.
    emulator.queue_fault("malformed", count=2, route="/v4/interact")
    out = tmp_path / "repeat.json"
    common = ["--results-dir", str(tmp_path / "runs"), "--baseline", "none", "--run-key", "rep"]
    assert await cli("run", str(suite), "--report", str(out), *common) == 0
    data = report(out)
    summary = data["summary"]
    assert (summary["conversations"], summary["runs"], summary["passed"]) == (2, 5, 2)
    assert summary["flaky"] == ["shaky"]
    shaky = next(v for v in data["verdicts"] if v["id"] == "shaky")
    assert (shaky["status"], shaky["passes"], shaky["runs"], shaky["flaky"]) == (
        "passed",
        2,
        3,
        True,
    )
    assert sorted(c["repetition"] for c in data["conversations"] if c["id"] == "shaky") == [1, 2, 3]
    assert all(c["requests"] >= 2 for c in data["conversations"])

    # The same run key again: the errored run is tried again, nothing that passed is re-sent.
    before = emulator.count("requests")
    assert await cli("run", str(suite), "--report", str(out), *common) == 0
    assert emulator.count("requests") - before == 2
    assert report(out)["summary"]["flaky"] == []


async def test_validate_estimates_the_requests_and_the_time(tmp_path, emulator, capsys):
    suite = write_suite(
        tmp_path / "nightly-estimate.yaml",
        emulator.url,
        f"""\
        - {{id: one, repeat: 4, turns: {PASSES}}}
        """,
        extra="cleanup: true",
    )
    assert await cli("validate", str(suite), "--estimate", "--rate", "2") == 0
    out = capsys.readouterr().out
    assert "1 conversations (4 runs with repeats): about 12 requests, 4 of them clean-up" in out
    assert "at 2 requests/s (given): about 6 s" in out
    assert await cli("validate", str(suite), "--estimate", "--rate", "-1") == 2
    # The forecast matches what a run sends, and after a run its rate is learned.
    report_path = tmp_path / "estimate.json"
    common = ["--results-dir", str(tmp_path / "runs"), "--run-key", "est-1"]
    assert await cli("run", str(suite), "--report", str(report_path), *common) == 0
    assert report(report_path)["summary"]["requests"] == 12
    capsys.readouterr()
    assert await cli("validate", str(suite), "--estimate") == 0
    assert "requests/s (learned from run est-1)" in capsys.readouterr().out
