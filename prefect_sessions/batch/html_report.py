"""One self-contained HTML page per run: the summary, the comparison, charts and every failure.

It opens from disk with no network: styles are inline and the charts are inline SVG drawn here
(a latency distribution and the pass rate over recent runs). Everything the agent or the suite
wrote is escaped: a transcript is data, never markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path

from prefect_sessions.batch.history import PastRun
from prefect_sessions.batch.report import MAX_TRANSCRIPTS, RunSummary, causes, transcript
from prefect_sessions.batch.verdicts import Verdict
from prefect_sessions.conversation.results import ConversationResult

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330}
h1{font-size:1.6rem}h2{margin-top:2rem;border-bottom:1px solid #dde;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #dde;padding:.25rem .6rem;
text-align:left;vertical-align:top}th{background:#f3f4f8}.passed{color:#17803d}
.failed{color:#b42318}.errored{color:#b54708}.tiles{display:flex;gap:1rem;flex-wrap:wrap}
.tile{border:1px solid #dde;border-radius:6px;padding:.6rem 1rem;min-width:7rem}
.tile b{display:block;font-size:1.4rem}pre{background:#f6f7f9;padding:.7rem;overflow:auto;
white-space:pre-wrap}svg{background:#fbfbfd;border:1px solid #dde}
"""


def _histogram_svg(values: Sequence[float], bins: int = 20) -> str:
    """Turn latencies as bars: how many turns took 0-5 %, 5-10 %, ... of the slowest."""
    width, height, pad = 640, 220, 30
    if not values:
        return '<p id="latency-chart">No turn latencies recorded.</p>'
    top = max(values) or 1.0
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, int(value / top * bins))] += 1
    tallest = max(counts)
    bar = (width - 2 * pad) / bins
    bars = []
    for index, count in enumerate(counts):
        h = (height - 2 * pad) * count / tallest
        x, y = pad + index * bar, height - pad - h
        low, high = top * index / bins, top * (index + 1) / bins
        bars.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
            f'fill="#3b6fd8"><title>{low:.0f}-{high:.0f} ms: {count} turns</title></rect>'
        )
    return (
        f'<svg id="latency-chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>Turn latency distribution</title>'
        + "".join(bars)
        + f'<text x="{pad}" y="{height - 8}" font-size="11">0 ms</text>'
        f'<text x="{width - pad - 60}" y="{height - 8}" font-size="11">{top:.0f} ms</text>'
        f'<text x="{pad}" y="16" font-size="11">{tallest} turns</text></svg>'
    )


def _pass_rate_svg(runs: Sequence[tuple[str, float]]) -> str:
    """The pass rate of recent runs, oldest on the left, as a line with a dot per run."""
    width, height, pad = 640, 200, 30
    if not runs:
        return '<p id="pass-rate-chart">No earlier runs to show.</p>'
    step = (width - 2 * pad) / max(1, len(runs) - 1)
    points = [
        (pad + index * step, height - pad - (height - 2 * pad) * rate)
        for index, (_, rate) in enumerate(runs)
    ]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dots = "".join(
        f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#17803d">'
        f"<title>{escape(key)}: {rate:.1%}</title></circle>"
        for (x, y), (key, rate) in zip(points, runs, strict=True)
    )
    return (
        f'<svg id="pass-rate-chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>Pass rate over recent runs</title>'
        f'<polyline points="{line}" fill="none" stroke="#17803d" stroke-width="2"/>{dots}'
        f'<text x="4" y="{pad + 4}" font-size="11">100%</text>'
        f'<text x="4" y="{height - pad + 4}" font-size="11">0%</text></svg>'
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], css: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f'<table class="{css}"><tr>{head}</tr>{body}</table>'


def html_report(
    summary: RunSummary,
    verdicts: Sequence[Verdict],
    results: Sequence[ConversationResult],
    *,
    history: Sequence[PastRun] = (),
    run_url: str | None = None,
) -> str:
    """The page as a string (see :func:`write_html_report`)."""
    return "".join(
        [
            *_header(summary, run_url),
            *_comparison(summary),
            *_latency(summary, results),
            *_trend(summary, history),
            *_verdicts(summary, verdicts),
            *_failures(verdicts, results),
            "</div></body></html>",
        ]
    )


def _header(summary: RunSummary, run_url: str | None) -> list[str]:
    """The title, the run's line and its tiles of figures."""
    tiles = [
        ("conversations", summary.conversations),
        ("passed", summary.passed),
        ("failed", summary.failed),
        ("errored", summary.errored),
        ("flaky", len(summary.flaky)),
        ("requests", summary.requests),
        ("answered 429", summary.rate_limited),
        ("requests / conversation", summary.requests_per_conversation),
        ("duration", f"{summary.duration_s:.1f} s"),
        *((f"usage: {name}", amount) for name, amount in summary.usage.items()),
    ]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(summary.suite)}: run {escape(summary.run_key)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{escape(summary.suite)}: {summary.passed}/{summary.conversations} passed</h1>",
        f"<p>Run <code>{escape(summary.run_key)}</code> against {escape(summary.provider)}, "
        f"{escape(summary.selection)}.",
    ]
    if run_url:
        parts.append(f' <a id="prefect-run" href="{escape(run_url)}">The run in Prefect</a>.')
    parts.append("</p><div class='tiles' id='summary'>")
    parts += [
        f"<div class='tile'><b>{escape(str(value))}</b>{escape(name)}</div>"
        for name, value in tiles
    ]
    parts.append("</div>")
    return parts


def _comparison(summary: RunSummary) -> list[str]:
    """What changed against the baseline: the lists of conversations, then the figures."""
    comparison = summary.comparison
    parts = ["<h2>Compared with the baseline</h2><div id='comparison'>"]
    if comparison is None:
        parts.append("<p>No earlier run of this suite to compare with.</p>")
    else:
        parts.append(f"<p>Against run <code>{escape(comparison.baseline_run_key)}</code>.</p>")
        parts.append(
            _table(
                ("", "count", "conversations"),
                (
                    (name.replace("_", " "), len(ids), ", ".join(ids[:30]))
                    for name, ids in comparison.lists()
                ),
            )
        )
        parts.append(
            _table(
                ("figure", "baseline", "now", "change"),
                (
                    (name, f"{c.baseline:g}", f"{c.current:g}", c.describe())
                    for name, c in comparison.figures.items()
                ),
            )
        )
    parts.append("</div>")
    return parts


def _latency(summary: RunSummary, results: Sequence[ConversationResult]) -> list[str]:
    """The latency percentiles and the turns' histogram."""
    latency = summary.latency
    return [
        "<h2>Latency</h2>",
        _table(
            ("", "p50", "p95"),
            [
                ("turn", f"{latency.turn_p50_ms:g} ms", f"{latency.turn_p95_ms:g} ms"),
                (
                    "conversation",
                    f"{latency.conversation_p50_ms:g} ms",
                    f"{latency.conversation_p95_ms:g} ms",
                ),
            ],
        ),
        _histogram_svg([turn.latency_ms for result in results for turn in result.turns]),
    ]


def _trend(summary: RunSummary, history: Sequence[PastRun]) -> list[str]:
    """The pass rate of the recent runs, this one last."""
    trend = [(run.run_key, run.pass_rate) for run in history]
    trend.append(
        (summary.run_key, summary.passed / summary.conversations if summary.conversations else 0.0)
    )
    return ["<h2>Pass rate over recent runs</h2>", _pass_rate_svg(trend)]


def _verdicts(summary: RunSummary, verdicts: Sequence[Verdict]) -> list[str]:
    """Failures by cause, the flaky conversations and the table of every conversation."""
    parts = []
    grouped = causes(verdicts)
    if grouped:
        parts.append("<h2>Failures by cause</h2>")
        parts.append(
            _table(
                ("cause", "conversations", "e.g."), ((c, n, ", ".join(i)) for c, n, i in grouped)
            )
        )
    if summary.flaky:
        parts.append(f"<h2>Flaky</h2><p id='flaky'>{escape(', '.join(summary.flaky))}</p>")
    parts.append("<h2>Conversations</h2>")
    columns: tuple[str, ...] = (
        "id",
        "status",
        "runs",
        "attempts",
        "turns",
        "duration ms",
        "turn p95 ms",
        "tags",
    )
    rows: list[tuple[object, ...]] = [
        (
            v.id,
            v.status,
            f"{v.passes}/{v.runs}",
            v.attempts,
            v.turns,
            v.duration_ms,
            v.turn_p95_ms,
            ", ".join(v.tags),
        )
        for v in verdicts
    ]
    if any(v.judge_score is not None for v in verdicts):  # a judged suite: its lowest scores
        columns += ("lowest judged score",)
        scores = ("" if v.judge_score is None else f"{v.judge_score:.2f}" for v in verdicts)
        rows = [(*row, score) for row, score in zip(rows, scores, strict=True)]
    parts.append(_table(columns, rows, css="conversations"))
    return parts


def _failures(verdicts: Sequence[Verdict], results: Sequence[ConversationResult]) -> list[str]:
    """The transcript of each conversation that did not pass (its first run that did not), up
    to :data:`MAX_TRANSCRIPTS`."""
    bad = {v.id for v in verdicts if v.status != "passed"}
    shown: set[str] = set()
    parts = ["<h2>Failures</h2><div id='failures'>"]
    for result in results:
        if result.id not in bad or result.status == "passed" or result.id in shown:
            continue
        if len(shown) == MAX_TRANSCRIPTS:
            parts.append(
                f"<p>Only the first {MAX_TRANSCRIPTS} are shown; the JSON report has all.</p>"
            )
            break
        shown.add(result.id)
        parts.append(
            f"<section class='failure'><h3 class='{result.status}'>{escape(result.id)}: "
            f"{result.status}</h3><p>{escape(result.reason or '')}</p>"
            f"<pre class='transcript'>{escape(transcript(result))}</pre></section>"
        )
    if not shown:
        parts.append("<p>Every conversation passed.</p>")
    return parts


def write_html_report(
    path: str | Path,
    summary: RunSummary,
    verdicts: Sequence[Verdict],
    results: Sequence[ConversationResult],
    *,
    history: Sequence[PastRun] = (),
    run_url: str | None = None,
) -> Path:
    """Write the page to ``path`` (its folder is made); the path written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    page = html_report(summary, verdicts, results, history=history, run_url=run_url)
    target.write_text(page, encoding="utf-8")
    return target
