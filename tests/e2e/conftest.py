"""One real Prefect stack for the end-to-end tests: server, pool, deployments, worker, emulator.

Runs only with ``PREFECT_SESSIONS_E2E=1`` (``make e2e``); plain ``pytest`` (``make test``) does not
collect this directory. The stack, started once per session:

- a fresh PostgreSQL database on 127.0.0.1:5432 (user ``postgres``, trust auth), or a SQLite file
  when PostgreSQL cannot be reached or ``E2E_DATABASE=sqlite``;
- ``prefect server start`` on a free loopback port (UI included), with its own ``PREFECT_HOME``;
- the emulator in this process (real HTTP on 127.0.0.1, no rate limits: the suites are large);
- credentials blocks made with ``python -m blocks --file`` (names as ``prefect.yaml`` expects,
  pointing at the emulator, keys from environment variables);
- the ``sessions`` process work pool and ``prefect --no-prompt deploy --all`` from the repository
  root, then ``prefect worker start --pool sessions --work-queue default`` for the deployments'
  runs, and two shard workers on the ``shards`` queue (``--limit 1`` each, so each takes one shard
  of a two-shard run). The shard workers have a home of their own each (no shared local result
  storage), pace through Redis on 127.0.0.1:6379 and hand results over through a result-storage
  block, as workers on separate machines would.

Logs of the server, the worker and the commands, and the browser test's screenshot, go to
``build/e2e/`` (``E2E_OUTPUT_DIR`` to change it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_sessions.emulator import EmulatorConfig, EmulatorHandle, run_emulator

if os.environ.get("PREFECT_SESSIONS_E2E") != "1":
    # Slow tests (a real server, a worker, a browser): `make e2e` runs them.
    collect_ignore_glob = ["test_*.py"]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OUTPUT = Path(os.environ.get("E2E_OUTPUT_DIR") or ROOT / "build" / "e2e")
POOL = "sessions"
SHARD_WORKERS = ("shard-worker-1", "shard-worker-2")
RESULTS_BLOCK = "shard-results"
REDIS_URL = "redis://127.0.0.1:6379/0"

#: Keys of the blocks the stack creates; each is a canary that must never show up in parameters.
KEYS = {
    "E2E_VOICEFLOW_KEY": "VF.DM.e2e-production-canary.7f3a9c",
    "E2E_UI_KEY": "VF.DM.e2e-ui-picked-canary.51be02",
    "E2E_LIVEAVATAR_KEY": "e2e-liveavatar-canary-0c4d",
    "E2E_VECTARA_KEY": "zwt_e2e-vectara-canary-9e21",
}
UI_BLOCK = "ui-picked"

#: Bounds of the waits that have no event to await (a process becoming ready).
SERVER_START_TIMEOUT = 120.0
POLL_INTERVAL = 0.25


#: Debian's chromium (``make e2e`` installs it); Playwright's own download fails on this machine.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium(**options: Any) -> Iterator[Any]:
    """A headless Chromium context with a throwaway profile; ``options`` go to Playwright's
    ``launch_persistent_context`` (``viewport``, ``offline``)."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="chromium-") as profile, sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, **options
        )
        try:
            yield context
        finally:
            context.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    """What the tests need to know about the running stack."""

    api_url: str
    ui_url: str
    emulator: EmulatorHandle
    env: dict[str, str]
    database: str
    #: Where the shard workers' result-storage block keeps persisted flow-run results.
    result_storage: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def log(self, name: str) -> str:
        path = OUTPUT / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _run(name: str, args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    """Run a command to completion; its output goes to build/e2e/<name>.log and is returned."""
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = result.stdout + result.stderr
    (OUTPUT / f"{name}.log").write_text(output)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{output[-4000:]}")
    return output


def _start(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (OUTPUT / f"{name}.log").open("wb")
    return subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process we started, and its process group (the worker's flow-run children)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


async def _postgres(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(
        host="127.0.0.1", port=5432, user="postgres", database="postgres", timeout=5
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _database(workdir: Path) -> tuple[str, str | None]:
    """``(connection URL, PostgreSQL database to drop afterwards)``."""
    if os.environ.get("E2E_DATABASE", "postgres") != "sqlite":
        name = f"prefect_sessions_e2e_{uuid.uuid4().hex[:10]}"
        try:
            asyncio.run(_postgres(f'CREATE DATABASE "{name}"'))
        except (OSError, ImportError) as exc:
            print(f"e2e: PostgreSQL unavailable ({exc}); using SQLite", file=sys.stderr)
        else:
            return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", name
    return f"sqlite+aiosqlite:///{workdir / 'prefect.db'}", None


def _wait_for_server(api_url: str, process: subprocess.Popen[bytes]) -> None:
    # Another process becoming ready has nothing to await: poll its health route, bounded.
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited ({process.returncode}); see {OUTPUT}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(POLL_INTERVAL)
    raise RuntimeError(f"prefect server not ready after {SERVER_START_TIMEOUT} s; see {OUTPUT}")


def _blocks_file(path: Path, emulator_url: str) -> None:
    path.write_text(
        f"""
blocks:
  - {{type: voiceflow-credentials, name: production, api_key_env: E2E_VOICEFLOW_KEY,
      project_id: demo-project, base_url: "{emulator_url}"}}
  - {{type: voiceflow-credentials, name: {UI_BLOCK}, api_key_env: E2E_UI_KEY,
      project_id: demo-project, base_url: "{emulator_url}"}}
  - {{type: liveavatar-credentials, name: production, api_key_env: E2E_LIVEAVATAR_KEY,
      base_url: "{emulator_url}"}}
  - {{type: vectara-credentials, name: production, api_key_env: E2E_VECTARA_KEY,
      base_url: "{emulator_url}"}}
"""
    )


def _require_redis() -> None:
    """The shard workers pace through Redis; say so plainly when it is not there."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        raise RuntimeError(
            f"the shard workers pace through Redis at {REDIS_URL}, which does not answer "
            f"({exc}); start it, e.g. redis-server --daemonize yes --bind 127.0.0.1 --port 6379"
        ) from exc


def _results_block(api_url: str, path: Path) -> str:
    """A result-storage block every shard worker writes to and the parent run reads from (in
    production an S3 or GCS bucket block; here a folder); its slug."""
    from prefect.filesystems import LocalFileSystem
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        LocalFileSystem(basepath=str(path)).save(RESULTS_BLOCK, overwrite=True)
    return f"local-file-system/{RESULTS_BLOCK}"


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    OUTPUT.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="prefect-sessions-e2e-"))
    # The nightly suite's results land in the repository (the deployment's working directory).
    results = ROOT / ".prefect-sessions" / "runs" / "nightly-regression"
    results_existed = results.exists()
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    connection_url, database = _database(workdir)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        **KEYS,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_HOME": str(workdir / "home"),
        "PREFECT_API_URL": api_url,
        "PREFECT_API_DATABASE_CONNECTION_URL": connection_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
    }
    config = EmulatorConfig(limits={"voiceflow": None, "liveavatar": None, "vectara": None})
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with run_emulator(config) as emulator:
            prefect = str(BIN / "prefect")
            server = _start(
                "server",
                [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env,
            )
            processes["server"] = server
            _wait_for_server(api_url, server)
            _blocks_file(workdir / "blocks.yaml", emulator.url)
            _run(
                "blocks",
                [str(BIN / "python"), "-m", "blocks", "--file", str(workdir / "blocks.yaml")],
                env,
            )
            _run(
                "work-pool",
                [prefect, "work-pool", "create", POOL, "--type", "process", "--overwrite"],
                env,
            )
            _run("deploy", [prefect, "--no-prompt", "deploy", "--all"], env)
            worker = [prefect, "worker", "start", "--pool", POOL, "--type", "process"]
            processes["worker"] = _start("worker", [*worker, "--work-queue", "default"], env)
            _require_redis()
            storage = _results_block(api_url, workdir / "shared-results")
            for name in SHARD_WORKERS:
                processes[name] = _start(
                    name,
                    [*worker, "--work-queue", "shards", "--limit", "1", "--name", name],
                    {
                        **env,
                        "PREFECT_HOME": str(workdir / name),
                        "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": storage,
                        "PREFECT_SESSIONS_REDIS_URL": REDIS_URL,
                    },
                )
            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                yield Stack(
                    api_url=api_url,
                    ui_url=api_url.removesuffix("/api"),
                    emulator=emulator,
                    env=env,
                    database=connection_url,
                    result_storage=workdir / "shared-results",
                    processes=processes,
                )
    finally:
        for name in (*SHARD_WORKERS, "worker", "server"):
            if name in processes:
                _stop(processes[name])
        if database is not None:
            try:
                asyncio.run(_postgres(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            except OSError as exc:
                print(f"e2e: could not drop {database}: {exc}", file=sys.stderr)
        if not results_existed:
            shutil.rmtree(results, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


def secrets_in(value: Any) -> list[str]:
    """The canary keys that appear anywhere in ``value`` (as JSON text)."""
    import json

    text = json.dumps(value, default=str)
    return [name for name, key in KEYS.items() if key in text]
