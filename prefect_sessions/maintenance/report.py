"""The maintenance run's summary: counts, then one table row per session acted on."""

from __future__ import annotations

from collections.abc import Sequence

from prefect_sessions.seam.maintenance import Action, MaintenanceReport, failure_text

SUMMARY_ARTIFACT_KEY = "session-maintenance"


def totals(report: MaintenanceReport) -> str:
    stop, delete, export = (
        len(report.of(action, "done", "dry run")) for action in ("stop", "delete", "export")
    )
    failed = f", {len(report.failed)} failed" if report.failed else ""
    if report.dry_run:
        return (
            f"Would stop {stop} sessions, delete {delete} sessions and export {export} "
            f"transcripts{failed}"
        )
    return (
        f"Stopped {stop} sessions, deleted {delete} sessions and exported {export} "
        f"transcripts{failed}"
    )


def summary_markdown(report: MaintenanceReport, errors: Sequence[BaseException] = ()) -> str:
    """The summary artifact: counts, then one table row per session acted on."""
    mode = "Dry run: nothing was changed" if report.dry_run else "Changes made"
    lines = [
        f"# Session maintenance as of {report.as_of.isoformat(timespec='seconds')}",
        "",
        f"**{mode}.** {totals(report)}.",
        "",
        "| checked | sessions |",
        "|---|---:|",
    ]
    lines += [f"| {what} | {count} |" for what, count in sorted(report.checked.items())]
    verbs: dict[Action, str] = {"stop": "stopped", "delete": "deleted", "export": "exported"}
    for action, verb in verbs.items():
        items = report.of(action)
        lines += ["", f"## {'Would be ' + verb if report.dry_run else verb.capitalize()}", ""]
        if not items:
            lines.append("None.")
            continue
        lines += ["| provider | session | agent | outcome | detail |", "|---|---|---|---|---|"]
        lines += [
            f"| {item.provider} | `{item.session}` | {item.agent_key or ''} | {item.outcome} "
            f"| {item.detail.replace('|', '/')} |"
            for item in items
        ]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [f"- {failure_text(exc)}" for exc in errors]
    return "\n".join(lines) + "\n"
