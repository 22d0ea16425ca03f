"""What every benchmark shares: an emulator in its own process, a generated suite, a table.

The emulator runs in a separate process (``prefect-sessions emulator --port 0``) so that its CPU
and the client's do not share one interpreter lock: what is measured is the client.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

#: The key every benchmark uses; the emulator accepts any non-empty key.
API_KEY = "VF.DM.benchmark-0123456789abcdef.key"
API_KEY_ENV = "BENCH_VOICEFLOW_API_KEY"
PROJECT_ID = "bench-project"

#: HTTP requests one generated conversation makes: start session, three interact turns, one
#: get state (for the variable expectation); no delete state, as the suite's ``cleanup`` is off.
REQUESTS_PER_CONVERSATION = 5


@dataclass
class Emulator:
    """A running emulator process and its admin API."""

    url: str
    process: subprocess.Popen[str]

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.url}/_emulator{path}", json=body, timeout=10.0)
        response.raise_for_status()
        return response.json()

    def totals(self) -> dict[str, int]:
        """``requests`` (every attempt that reached it), ``rate_limited`` (429s), ``faults``."""
        totals: dict[str, int] = self._admin("GET", "/counters")["totals"]
        return totals

    def reset(self) -> None:
        """Forget sessions, counters and rate-limit windows."""
        self._admin("POST", "/reset")

    def set_limit(self, limit: str) -> None:
        """Change the Voiceflow limit (``"20/1s"``, ``"inflight=4 publish=none"``, ``"off"``)."""
        self._admin("PUT", "/limits", {"voiceflow": limit})


@contextlib.contextmanager
def emulator_process(
    *, voiceflow_limit: str = "off", latency_ms: float = 0.0, extra: Sequence[str] = ()
) -> Iterator[Emulator]:
    """``prefect-sessions emulator`` on a free port of 127.0.0.1, stopped on exit; ``extra``
    options added (``["--model-limit", "120/10s tokens=20000"]``)."""
    command = [
        sys.executable,
        "-m",
        "prefect_sessions.emulator",
        "--port",
        "0",
        "--voiceflow-limit",
        voiceflow_limit,
        "--latency-ms",
        str(latency_ms),
        *extra,
    ]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once the socket listens
        if "http://" not in line:
            raise RuntimeError(f"the emulator did not start: {line!r}")
        url = line.split("http://", 1)[1].split()[0]
        yield Emulator(url=f"http://{url}", process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def write_suite(
    directory: Path,
    conversations: int,
    *,
    base_url: str,
    concurrency: int,
    outputs: bool = False,
) -> Path:
    """A suite of ``conversations`` scripted conversations of three turns each (plus a variable
    check), one per row of a generated dataset; returns the suite's path. With ``outputs``, the
    suite also names three outputs (the last reply, a variable, a regex group) for the dataset."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = directory / "rows.csv"
    with rows.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "name", "order"])
        for number in range(conversations):
            writer.writerow([f"u{number:06d}", f"User {number}", 100_000 + number])
    suite = directory / "suite.yaml"
    suite.write_text(
        f"""name: benchmark
provider: voiceflow
connection:
  base_url: {base_url}
  api_key_env: {API_KEY_ENV}
  project_id: {PROJECT_ID}
concurrency: {concurrency}
{OUTPUTS if outputs else ""}conversations:
  - id: "refund-{{{{ row.user }}}}"
    dataset: rows.csv
    variables: {{name: "{{{{ row.name }}}}"}}
    turns:
      - launch: {{}}
        expect: [{{contains: "Welcome"}}]
      - button: "Request a refund"
        expect: [{{regex: "order (number|id)"}}, {{variable: {{name: topic, equals: refund}}}}]
      - text: "My order number is {{{{ row.order }}}}"
        expect: [{{contains: "{{{{ row.order }}}}"}}, {{trace_type: cardV2}}]
""",
        encoding="utf-8",
    )
    os.environ.setdefault(API_KEY_ENV, API_KEY)
    return suite


#: The outputs a pipeline step would keep: what the agent said, what it set, a value read from it.
OUTPUTS = """outputs:
  answer: {reply: last}
  topic: {variable: topic}
  asked_for: {regex: "order (number|id)", group: 1}
"""


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table of ``rows``: what every benchmark prints."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}"
        return str(value)

    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines.extend("| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows)
    return "\n".join(lines)


def emit(name: str, report: dict[str, Any], columns: Sequence[str], json_path: str | None) -> None:
    """Print the table and the goal verdicts; write the whole report as JSON if asked."""
    print(f"\n## {name}\n")
    print(table(report["rows"], columns))
    for goal in report.get("goals", []):
        mark = "met" if goal["met"] else "MISSED"
        print(f"- {goal['goal']}: {goal['value']} ({mark})")
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2), encoding="utf-8")


def goal(text: str, value: Any, met: bool) -> dict[str, Any]:
    return {"goal": text, "value": value, "met": bool(met)}


def now() -> float:
    return time.perf_counter()
