"""The nightly-regression user's view, on the real stack: a Failed nightly run fires the team's
Prefect automation, and the HTML report opens offline in headless Chromium with its charts and
its failures' transcripts. Screenshots go to ``build/e2e/``."""

from __future__ import annotations

import asyncio
import subprocess
import textwrap
from pathlib import Path

import pytest
from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.deployments import arun_deployment
from prefect.events.actions import DoNothing
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventResourceFilter
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.flow_runs import wait_for_flow_run

from tests.e2e.conftest import BIN, OUTPUT, ROOT, Stack, chromium

NIGHTLY = "batch-conversations/nightly-suite"
WAIT = 240


def _suite(path: Path, url: str | None, failing: str) -> Path:
    connection = (
        f'connection: {{base_url: "{url}", api_key_env: E2E_VOICEFLOW_KEY, project_id: demo}}'
        if url
        else "credentials: production"
    )
    path.write_text(
        textwrap.dedent(
            f"""\
            name: {path.stem}
            provider: voiceflow
            {connection}
            concurrency: 4
            conversations:
              - id: greets
                turns: [{{launch: {{}}, expect: [{{contains: Welcome}}]}}]
              - id: refunds
                turns:
                  - launch: {{}}
                  - text: "I need a refund"
                    expect: [{{contains: "{failing}"}}]
            """
        ),
        encoding="utf-8",
    )
    return path


async def test_a_failed_nightly_run_fires_the_teams_automation(
    stack: Stack, tmp_path: Path
) -> None:
    suite = _suite(tmp_path / "nightly-alert.yaml", None, failing="store credit")
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(NIGHTLY)
    automation = await Automation(
        name=f"alert-on-failed-nightly-{tmp_path.name}",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed"},
            match_related={"prefect.resource.id": f"prefect.deployment.{deployment.id}"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[DoNothing()],
    ).acreate()
    watched = EventFilter(resource=EventResourceFilter(id=[f"prefect.automation.{automation.id}"]))
    try:
        async with get_events_subscriber(filter=watched) as events:
            flow_run = await arun_deployment(
                NIGHTLY, parameters={"suite_path": str(suite)}, timeout=0
            )
            finished = await wait_for_flow_run(flow_run.id, timeout=WAIT)
            assert finished.state is not None
            assert finished.state.is_failed()
            assert "1/2 passed, 1 failed" in (finished.state.message or "")

            async def fired() -> str:
                async for event in events:
                    return event.event
                raise AssertionError("the event stream ended")

            name = await asyncio.wait_for(fired(), timeout=WAIT)
        assert name.startswith("prefect.automation.")
        summary = await finished.state.aresult(raise_on_failure=False)
        assert summary.failed == 1  # the summary is still the run's result
    finally:
        async with get_client() as client:
            await client.delete_automation(automation.id)


pytest.importorskip("playwright.sync_api", reason="make e2e installs playwright")


def _run(stack: Stack, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "prefect-sessions"), *argv],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def test_the_html_report_opens_offline_with_charts_and_transcripts(stack: Stack, tmp_path: Path):
    suite = _suite(tmp_path / "nightly-html.yaml", stack.emulator.url, failing="refund")
    runs = str(tmp_path / "runs")
    first = _run(stack, "run", str(suite), "--run-key", "html-1", "--results-dir", runs)
    assert first.returncode == 0, first.stdout + first.stderr
    _suite(suite, stack.emulator.url, failing="store credit")  # the next night, one breaks
    html = OUTPUT / "nightly-report.html"
    second = _run(
        stack, "run", str(suite), "--run-key", "html-2", "--results-dir", runs, "--html", str(html)
    )
    assert second.returncode == 1, second.stdout + second.stderr
    assert "Compared against run html-1: 1 newly failing" in second.stdout

    # offline: the report must need no network.
    with chromium(offline=True, viewport={"width": 1300, "height": 1600}) as context:
        fetched: list[str] = []
        context.on("request", lambda request: fetched.append(request.url))
        page = context.new_page()
        try:
            page.goto(html.resolve().as_uri())
            assert page.title() == "nightly-html: run html-2"
            bars = page.locator("#latency-chart rect.bar")
            assert bars.count() == 20
            heights = [float(bars.nth(i).get_attribute("height") or 0) for i in range(20)]
            assert max(heights) > 0  # drawn, not empty
            box = page.locator("#latency-chart").bounding_box()
            assert box is not None
            assert box["width"] > 300  # rendered at its size
            assert box["height"] > 100
            # This suite's two runs: the first, then this one (never twice).
            assert page.locator("#pass-rate-chart circle.point").count() == 2
            comparison = page.locator("#comparison").inner_text()
            assert "newly failing" in comparison
            assert "refunds" in comparison
            transcript = page.locator("#failures pre.transcript").first.inner_text()
            assert "user  > text: 'I need a refund'" in transcript
            assert "FAILED: expected the answer to contain 'store credit'" in transcript
            link = page.locator("#prefect-run").get_attribute("href") or ""
            assert link.startswith(stack.ui_url.rstrip("/"))
            assert "/runs/flow-run/" in link
            assert [url for url in fetched if not url.startswith("file://")] == []
        finally:
            page.screenshot(path=str(OUTPUT / "nightly-report.png"), full_page=True)
