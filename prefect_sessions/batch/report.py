"""What a run tells people: a summary, a JSON report, JUnit XML and a markdown page of failures."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from pydantic import BaseModel

from prefect_sessions.conversation.results import ConversationResult

#: Failures shown with their transcript in the markdown report; the JSONL file has them all.
MAX_TRANSCRIPTS = 50


class RunSummary(BaseModel):
    """The totals of one run of a suite (a resumed run counts what earlier attempts finished)."""

    suite: str
    provider: str
    run_key: str
    conversations: int
    passed: int
    failed: int
    errored: int
    resumed: int = 0
    requests: int
    rate_limited: int
    duration_s: float
    results_path: str
    shards: int = 1

    @property
    def ok(self) -> bool:
        """Whether every conversation passed."""
        return self.failed == 0 and self.errored == 0 and self.passed == self.conversations

    def line(self) -> str:
        """One line for a terminal or a log."""
        share = self.rate_limited / self.requests if self.requests else 0.0
        return (
            f"{self.suite}: {self.passed}/{self.conversations} passed, {self.failed} failed, "
            f"{self.errored} errored in {self.duration_s:.1f} s; {self.requests} requests, "
            f"{self.rate_limited} answered 429 ({share:.1%})"
        )


def json_report(summary: RunSummary, results: Iterable[ConversationResult]) -> dict[str, Any]:
    """``{"summary": {...}, "conversations": [...]}``, the CLI's ``--report`` format."""
    return {
        "summary": summary.model_dump(mode="json"),
        "conversations": [result.model_dump(mode="json") for result in results],
    }


def write_json_report(
    path: str | Path, summary: RunSummary, results: Iterable[ConversationResult]
) -> None:
    Path(path).write_text(json.dumps(json_report(summary, results), indent=2), encoding="utf-8")


def write_junit(
    path: str | Path, summary: RunSummary, results: Iterable[ConversationResult]
) -> None:
    """JUnit XML: one test case per conversation, failures and errors with their reason."""
    suite = ElementTree.Element(
        "testsuite",
        name=summary.suite,
        tests=str(summary.conversations),
        failures=str(summary.failed),
        errors=str(summary.errored),
        time=f"{summary.duration_s:.3f}",
    )
    for result in results:
        case = ElementTree.SubElement(
            suite,
            "testcase",
            classname=f"{summary.provider}.{summary.suite}",
            name=result.id,
            time=f"{result.duration_ms / 1000:.3f}",
        )
        if result.status != "passed":
            tag = "failure" if result.status == "failed" else "error"
            node = ElementTree.SubElement(case, tag, message=result.reason or result.status)
            node.text = transcript(result)
    root = ElementTree.Element("testsuites")
    root.append(suite)
    tree = ElementTree.ElementTree(root)
    ElementTree.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def transcript(result: ConversationResult) -> str:
    """The conversation as a person would read it: each turn, what the agent said, what failed."""
    lines = []
    for number, turn in enumerate(result.turns, start=1):
        lines.append(f"{number}. user  > {turn.turn}")
        for message in turn.messages:
            lines.append(f"   agent < {message}")
        if turn.buttons:
            lines.append(f"   buttons: {', '.join(turn.buttons)}")
        for failure in turn.failures:
            lines.append(f"   FAILED: {failure}")
    if result.status == "errored" and result.reason:
        lines.append(f"ERROR: {result.reason}")
    return "\n".join(lines)


def markdown_report(summary: RunSummary, failures: Iterable[ConversationResult]) -> str:
    """A markdown page: the totals, then the transcript of each failure (up to a limit)."""
    share = summary.rate_limited / summary.requests if summary.requests else 0.0
    parts = [
        f"# {summary.suite}: {summary.passed}/{summary.conversations} passed",
        "",
        "| conversations | passed | failed | errored | requests | answered 429 | duration |",
        "|---|---|---|---|---|---|---|",
        f"| {summary.conversations} | {summary.passed} | {summary.failed} | {summary.errored} "
        f"| {summary.requests} | {summary.rate_limited} ({share:.1%}) "
        f"| {summary.duration_s:.1f} s |",
        "",
        f"Run key `{summary.run_key}`; every result is in `{summary.results_path}`.",
    ]
    for shown, result in enumerate(failures):
        if shown == MAX_TRANSCRIPTS:
            parts.append(f"\n_Only the first {MAX_TRANSCRIPTS} failures are shown here._")
            break
        parts += [
            "",
            f"## {result.id}: {result.status}",
            "",
            f"{result.reason or ''}",
            "",
            "```",
            transcript(result),
            "```",
        ]
    return "\n".join(parts)
