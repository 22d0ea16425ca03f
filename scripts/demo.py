"""``make demo``: the main job on the embedded default, with no account anywhere.

Starts Prefect's local server (left running, so its UI can be browsed; ``make demo-stop`` ends
it) and the bundled emulator with a rate limit on, then runs the example suite of 200
conversations through ``prefect-sessions run``, compared with the previous demo run, then a few
conversations judged by the emulator's model (a judge, a similarity, a simulated user), and says
where the results and the HTML reports are.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".prefect-sessions" / "demo"
BIN = Path(sys.executable).parent
PREFECT_PORT = int(os.environ.get("PREFECT_PORT", "4200"))
SUITE = ROOT / "examples" / "support-suite.yaml"
#: A few conversations judged by the emulator's model, and a simulated user.
JUDGED_SUITE = ROOT / "examples" / "judged-suite.yaml"
EMULATOR_LIMIT = "50/1s"


def free_port(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[bytes] | None, what: str, log: Path) -> None:
    """Poll a health URL until it answers; a server starting in another process offers nothing
    to await. Bounded: 90 s."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            sys.exit(f"make demo: {what} exited early; see {log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    sys.exit(f"make demo: {what} did not answer at {url} within 90 s; see {log}")


def prefect_server(env: dict[str, str]) -> str:
    api = f"http://127.0.0.1:{PREFECT_PORT}/api"
    try:
        if httpx.get(f"{api}/health", timeout=2).status_code == 200:
            print(f"Using the Prefect server already running at {api}")
            return api
    except httpx.HTTPError:
        pass
    log = STATE / "prefect-server.log"
    print(f"Starting Prefect's local server on 127.0.0.1:{PREFECT_PORT} (log: {log}) ...")
    process = subprocess.Popen(
        [
            str(BIN / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(PREFECT_PORT),
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # keeps running after make demo, for the UI
    )
    (STATE / "prefect-server.pid").write_text(str(process.pid))
    wait_until_up(f"{api}/health", process, "the Prefect server", log)
    return api


def main() -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(STATE / "prefect-home")}
    api = prefect_server(env)
    env["PREFECT_API_URL"] = api
    port = free_port(8787)
    log = STATE / "emulator.log"
    print(f"Starting the emulator on 127.0.0.1:{port}, Voiceflow limited to {EMULATOR_LIMIT} ...")
    emulator = subprocess.Popen(
        [
            str(BIN / "prefect-sessions"),
            "emulator",
            "--port",
            str(port),
            "--voiceflow-limit",
            EMULATOR_LIMIT,
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/_emulator/health", emulator, "the emulator", log)
        report, junit, html = STATE / "report.json", STATE / "junit.xml", STATE / "report.html"
        env["VOICEFLOW_API_KEY"] = "demo-key"  # the emulator accepts any non-empty key
        code = subprocess.call(
            [
                str(BIN / "prefect-sessions"),
                "run",
                str(SUITE),
                "--base-url",
                url,
                "--report",
                str(report),
                "--junit",
                str(junit),
                "--html",
                str(html),
                "--results-dir",
                str(STATE / "runs"),
            ],
            env=env,
        )
        judged = run_judged(url, env)
    finally:
        emulator.send_signal(signal.SIGINT)
        emulator.wait(timeout=10)
    print(f"\nJSON report: {report}\nJUnit XML:   {junit}")
    print("Run 'make demo' again: the next run is compared with this one (newly failing, fixed,")
    print("latency and requests), in the terminal, the HTML report and the Prefect UI.")
    print(
        f"Prefect UI:  http://127.0.0.1:{PREFECT_PORT} (flow runs; artifacts: summary, "
        "conversations, comparison, report)"
    )
    print("The Prefect server keeps running for the UI; 'make demo-stop' stops it.")
    return code or judged


def run_judged(url: str, env: dict[str, str]) -> int:
    """The judged suite against the same emulator (its model under /openai/v1)."""
    suite = JUDGED_SUITE
    if not url.endswith(":8787"):  # the suite names the default port: point it at this one
        suite = STATE / JUDGED_SUITE.name
        suite.write_text(
            JUDGED_SUITE.read_text(encoding="utf-8").replace("http://127.0.0.1:8787", url),
            encoding="utf-8",
        )
    print("\nJudged expectations and a simulated user, judged by the emulator's model:")
    env = {**env, "VECTARA_API_KEY": "demo-key", "EMULATOR_MODEL_KEY": "demo-model-key"}
    return subprocess.call(
        [
            str(BIN / "prefect-sessions"),
            "run",
            str(suite),
            "--base-url",
            url,
            "--html",
            str(STATE / "judged-report.html"),
            "--results-dir",
            str(STATE / "runs"),
        ],
        env=env,
    )


if __name__ == "__main__":
    raise SystemExit(main())
