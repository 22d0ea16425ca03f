"""Benchmark 5, start-up: what a person waits for before the first request, whole commands timed.

Side by side, interleaved, in one run (each command a fresh process, the order rotating each
round), against a Prefect server this benchmark starts and the emulator:

- ``bare imports``: ``python -c "import httpx, pydantic, yaml"`` in the same venv (the yardstick
  of ``--help`` and ``validate``);
- ``--help`` and ``validate`` of the demo suite;
- ``Prefect's one-task flow``: a flow with one task sending the same two requests
  (``benchmarks/one_task_flow.py``), with ``PREFECT_API_URL`` set (the yardstick of ``run``);
- ``run``, one conversation, with ``PREFECT_API_URL`` set;
- ``run`` with no ``PREFECT_API_URL`` while that server runs on the default address: the CLI must
  reuse it (it says so), and start no temporary server;
- ``run`` with a temporary server, on a home whose database is already made.

``--breakdown`` also profiles one ``run`` (cProfile) and says where its seconds go: imports, the
flow's registration and start, the history lookup, the conversation, the artifacts.

Run: ``python -m benchmarks.startup [--rounds 5] [--breakdown]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import emit, emulator_process, goal
from tests.support.first_run import free_port, fresh_environment, one_conversation_suite

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
COLUMNS = ("command", "median_s", "min_s", "max_s", "against", "ratio", "difference_s")


@contextlib.contextmanager
def prefect_server(home: Path) -> Iterator[int]:
    """``prefect server start`` on a free port, its own home; the port."""
    port = free_port()
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 - our interpreter's prefect, fixed arguments
        [str(Path(PYTHON).parent / "prefect"), "server", "start", "--port", str(port)],
        env=fresh_environment(home / "server-home", port, PREFECT_SERVER_ANALYTICS_ENABLED="0"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        import httpx

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.25)  # another process starting: nothing to await
        else:
            raise RuntimeError(f"the Prefect server did not start; see {log.name}")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _timed(command: list[str], environment: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - the benchmark's own commands
        command, env=environment, cwd=ROOT, capture_output=True, text=True, check=False
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return took, done.stderr


def _commands(
    work: Path, emulator_url: str, port: int, prepared: Path
) -> dict[str, tuple[list[str], Any]]:
    suite = one_conversation_suite(work, emulator_url)
    cli = [PYTHON, "-m", "prefect_sessions.cli"]
    run = [*cli, "run", str(suite), "--results-dir", str(work / "runs"), "--progress", "none"]
    api = f"http://127.0.0.1:{port}/api"

    def with_api() -> dict[str, str]:
        return fresh_environment(work / "client-home", port, PREFECT_API_URL=api)

    def reusing() -> dict[str, str]:
        return fresh_environment(work / "reusing-home", port)

    def temporary() -> dict[str, str]:
        home = work / "temporary-home"
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(prepared, home)
        return fresh_environment(home, free_port())

    quiet = {**fresh_environment(work / "client-home", free_port()), "VOICEFLOW_API_KEY": "x"}
    return {
        "bare imports": ([PYTHON, "-c", "import httpx, pydantic, yaml"], lambda: quiet),
        "--help": ([*cli, "--help"], lambda: quiet),
        "validate (demo suite)": ([*cli, "validate", "examples/support-suite.yaml"], lambda: quiet),
        "Prefect's one-task flow": (
            [PYTHON, "-m", "benchmarks.one_task_flow", emulator_url],
            with_api,
        ),
        "run, PREFECT_API_URL set": (run, with_api),
        "run, local server reused": (run, reusing),
        "run, temporary server": (run, temporary),
    }


def _prepared_home(work: Path) -> Path:
    home = work / "prepared-home"
    subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
        [PYTHON, "-m", "prefect", "server", "database", "upgrade", "-y"],
        env=fresh_environment(home, free_port()),
        capture_output=True,
        check=True,
    )
    return home


def breakdown(work: Path, emulator_url: str, port: int) -> list[tuple[str, float]]:
    """Where one ``run``'s seconds go (cProfile, so each figure is a little inflated)."""
    suite = one_conversation_suite(work, emulator_url)
    profile = work / "run.prof"
    _timed(
        [
            PYTHON,
            "-m",
            "cProfile",
            "-o",
            str(profile),
            "-m",
            "prefect_sessions.cli",
            "run",
            str(suite),
            "--results-dir",
            str(work / "runs"),
            "--progress",
            "none",
        ],
        fresh_environment(
            work / "client-home", port, PREFECT_API_URL=f"http://127.0.0.1:{port}/api"
        ),
    )
    stats: Any = pstats.Stats(str(profile)).stats
    total = max(ct for (_, _, name), (_, _, _, ct, _) in stats.items() if name == "<module>")

    def cumulative(path_part: str, function: str) -> float:
        return sum(
            ct
            for (path, _, name), (_, _, _, ct, _) in stats.items()
            if path_part in path and name == function
        )

    parts = [
        (
            "choosing the Prefect API (imports Prefect's settings)",
            ("cli/prefect_api.py", "_settings"),
        ),
        ("importing the command and the flow", ("prefect_sessions/cli/run.py", "<module>")),
        ("importing the batch flow (Prefect's flow engine)", ("flows/batch.py", "<module>")),
        (
            "the flow run: create, start, finish (Prefect's engine)",
            ("flow_engine.py", "run_flow_async"),
        ),
        ("of which the history lookup for the baseline", ("batch/history.py", "find_record")),
        ("of which tagging the flow run", ("batch/history.py", "tag_this_run")),
        ("of which the conversation (its chunk task)", ("batch/chunks.py", "run_share")),
        ("of which publishing the artifacts", ("batch/run.py", "_publish")),
    ]
    found = [(part, cumulative(*where)) for part, where in parts]
    found.append(("the whole process (profiled)", total))
    return found


def run(rounds: int = 5, *, with_breakdown: bool = False) -> dict[str, Any]:
    seconds: dict[str, list[float]] = {}
    reused_said = temporary_made = True
    with (
        tempfile.TemporaryDirectory() as tmp,
        emulator_process(voiceflow_limit="off") as emulator,
    ):
        work = Path(tmp)
        prepared = _prepared_home(work)
        with prefect_server(work) as port:
            commands = _commands(work, emulator.url, port, prepared)
            names = list(commands)
            for number in range(rounds):
                shift = number % len(names)
                for name in names[shift:] + names[:shift]:
                    command, environment = commands[name]
                    took, said = _timed(command, environment())
                    seconds.setdefault(name, []).append(took)
                    if name == "run, local server reused":
                        reused_said &= "Using the Prefect server already running" in said
                        temporary_made &= (work / "reusing-home" / "prefect.db").exists()
            parts = breakdown(work, emulator.url, port) if with_breakdown else []
    median = {name: statistics.median(values) for name, values in seconds.items()}
    against = {
        "--help": "bare imports",
        "validate (demo suite)": "bare imports",
        "run, PREFECT_API_URL set": "Prefect's one-task flow",
        "run, local server reused": "Prefect's one-task flow",
        "run, temporary server": "Prefect's one-task flow",
    }
    rows = []
    for name, values in seconds.items():
        base = against.get(name)
        rows.append(
            {
                "command": name,
                "median_s": median[name],
                "min_s": min(values),
                "max_s": max(values),
                "against": base or "",
                "ratio": median[name] / median[base] if base else None,
                "difference_s": median[name] - median[base] if base else None,
            }
        )
    by_name = {row["command"]: row for row in rows}
    help_ratio = by_name["--help"]["ratio"]
    validate_ratio = by_name["validate (demo suite)"]["ratio"]
    run_extra = by_name["run, PREFECT_API_URL set"]["difference_s"]
    reuse_extra = by_name["run, local server reused"]["difference_s"]
    return {
        "benchmark": "startup",
        "settings": {"rounds": rounds},
        "rows": rows,
        "breakdown": [{"part": part, "seconds": round(value, 3)} for part, value in parts],
        "goals": [
            goal("--help < 2 x bare imports", round(help_ratio, 2), help_ratio < 2),
            goal("validate < 3 x bare imports", round(validate_ratio, 2), validate_ratio < 3),
            goal(
                "run against a running server within 0.5 s of Prefect's one-task flow",
                round(run_extra, 2),
                run_extra <= 0.5,
            ),
            goal(
                "a local server already up is reused: no temporary server, within 0.5 s",
                f"{reuse_extra:.2f} s, said so: {reused_said}, temporary server: {temporary_made}",
                reused_said and not temporary_made and reuse_extra <= 0.5,
            ),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--breakdown", action="store_true", help="also profile one run")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    os.environ.pop("PREFECT_API_URL", None)
    report = run(args.rounds, with_breakdown=args.breakdown)
    emit(f"Start-up: {args.rounds} rounds, interleaved", report, COLUMNS, args.json)
    for part in report["breakdown"]:
        print(f"- {part['part']}: {part['seconds']:.3f} s")


if __name__ == "__main__":
    main()
