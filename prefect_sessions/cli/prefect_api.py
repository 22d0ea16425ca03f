"""Which Prefect API a ``prefect-sessions run`` uses, and a temporary server when there is none.

In this order:

1. ``PREFECT_API_URL`` (the environment or the Prefect profile): the user's choice. A run refuses
   to start when it does not answer.
2. A Prefect server already running on this machine at the default address
   (``PREFECT_SERVER_API_HOST:PREFECT_SERVER_API_PORT``, ``127.0.0.1:4200``; the one ``make demo``
   leaves, or ``prefect server start``): reused, and said in one line. No temporary server.
3. Otherwise a temporary server, as Prefect's own would be (a subprocess of the same uvicorn app,
   UI off), but started so that the first run on a new, busy machine works:

   - a new database is prepared first (``prefect server database upgrade``): its migrations take
     longer than Prefect's 20-s start-up timeout when both cores are busy, and a CI job is
     exactly that case;
   - each wait is bounded by ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` when the user
     set it, else by :data:`DEFAULT_WAIT_SECONDS`;
   - its output goes to a log file in ``PREFECT_HOME``, and its telemetry is off (its heartbeat
     insert is what logged "database is locked" tracebacks into the run's terminal, and it
     would call a service nobody configured);
   - when it cannot start, :class:`PrefectApiError` says so in one line, naming ``PREFECT_HOME``,
     the log and the fix.

The choice is made before the flow is imported, so that the temporary server boots while this
process imports Prefect and the flow.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from prefect_sessions.api_watch import unreachable

#: How long the database preparation and the server's start may each take when the user did
#: not set ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``: a fresh database on a machine
#: with both cores busy took 25 to 60 s here; Prefect's own default (20 s) fails that case.
DEFAULT_WAIT_SECONDS = 180
#: The temporary server's log, in ``PREFECT_HOME``.
LOG_NAME = "prefect-sessions-server.log"
_POLL_SECONDS = 0.25


class PrefectApiError(Exception):
    """No Prefect API can be had for this run; the message is the one line to show."""


@dataclass
class PrefectApi:
    """The API a run uses: ``server`` when this process started it (and stops it), ``reused``
    when it is a local server found running."""

    url: str
    server: TemporaryServer | None = None
    reused: bool = False

    @property
    def temporary(self) -> bool:
        return self.server is not None

    def ready(self) -> None:
        """Wait until a temporary server answers (at once for any other API).

        Raises:
            PrefectApiError: the temporary server exited or did not answer in time.
        """
        if self.server is not None:
            self.server.wait()


def _settings() -> Any:
    from prefect.settings import get_current_settings

    return get_current_settings()


def _use(url: str) -> None:
    """Make ``url`` the API of every Prefect client of this process, threads included (Prefect's
    global settings context is read from the environment)."""
    from prefect.context import refresh_global_settings_context

    os.environ["PREFECT_API_URL"] = url
    refresh_global_settings_context()


def _forget(previous: str | None) -> None:
    from prefect.context import refresh_global_settings_context

    if previous is None:
        os.environ.pop("PREFECT_API_URL", None)
    else:
        os.environ["PREFECT_API_URL"] = previous
    refresh_global_settings_context()


def _wait_bound(settings: Any) -> int:
    """The user's ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``, else ours."""
    ephemeral = settings.server.ephemeral
    if "startup_timeout_seconds" in ephemeral.model_fields_set:
        return int(ephemeral.startup_timeout_seconds)
    return DEFAULT_WAIT_SECONDS


def _local_address(settings: Any) -> str:
    host = settings.server.api.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a server bound everywhere answers here
        host = "127.0.0.1"
    return f"http://{host}:{settings.server.api.port}/api"


def _sqlite_file(settings: Any) -> Path | None:
    """The temporary server's SQLite database file; None for another database."""
    secret = settings.server.database.connection_url
    url = secret.get_secret_value() if secret is not None else ""
    prefix = "sqlite+aiosqlite:///"
    if not url.startswith(prefix) or ":memory:" in url:
        return None
    return Path(url.removeprefix(prefix))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TemporaryServer:
    """A Prefect server in a subprocess for one run: prepared, started, waited for, stopped."""

    def __init__(self, settings: Any, *, announce: Callable[[str], None]) -> None:
        self.home = Path(settings.home)
        self.log_path = self.home / LOG_NAME
        self.wait_seconds = _wait_bound(settings)
        self._database = _sqlite_file(settings)
        self._environment = {
            **os.environ,
            **settings.to_environment_variables(exclude_unset=True),
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        self._environment.pop("PREFECT_API_URL", None)
        self._announce = announce
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.url = ""

    def _failed(self, what: str) -> PrefectApiError:
        return PrefectApiError(
            f"Prefect's temporary server {what} (PREFECT_HOME={self.home}; its log: "
            f"{self.log_path}): start a server with 'prefect server start' and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api, or allow it more time with "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS; nothing was run"
        )

    def prepare(self) -> None:
        """Create and migrate a database that does not exist yet, before the server starts."""
        if self._database is None or (
            self._database.exists() and self._database.stat().st_size > 0
        ):
            return
        self._announce(
            f"Preparing Prefect's database in {self.home} (its first run; this takes a moment)"
        )
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
                    env=self._environment,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=self.wait_seconds,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise self._failed(
                    f"could not prepare its database within {self.wait_seconds} s"
                ) from None
        if done.returncode != 0:
            raise self._failed(f"could not prepare its database (exit {done.returncode})")

    def launch(self) -> None:
        """Start the server process; :meth:`wait` for it to answer."""
        import prefect

        port = _free_port()
        self.url = f"http://127.0.0.1:{port}/api"
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(Path(prefect.__file__).parent.parent),
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env=self._environment,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait(self) -> None:
        """Until the server answers its health check, bounded.

        Raises:
            PrefectApiError: it exited, or did not answer in time.
        """
        assert self._process is not None, "launch() first"
        deadline = time.monotonic() + self.wait_seconds
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise self._failed(f"exited at start (exit {self._process.returncode})")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                time.sleep(_POLL_SECONDS)  # another process starting: nothing to await
        raise self._failed(f"did not answer within {self.wait_seconds} s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            _drain_prefect_workers()  # the run's last logs and events reach the server first
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def _drain_prefect_workers() -> None:
    """Send what Prefect's log and event workers still hold (bounded), before their server goes:
    otherwise they print "Error logging to API" after the run."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=5)


@contextlib.contextmanager
def prefect_api(*, announce: Callable[[str], None]) -> Iterator[PrefectApi]:
    """The Prefect API for this run, made the API of every Prefect client of this process for
    the length of the block (see the module's docstring for the order of choice).

    A temporary server is started when the block is entered, boots while the caller imports
    the flow, is waited for by :meth:`PrefectApi.ready`, and is stopped when the block ends.

    Raises:
        PrefectApiError: the configured API does not answer, or no server could be started.
    """
    settings = _settings()
    configured = settings.api.url
    if configured:
        reason = unreachable(configured)
        if reason is not None:
            raise PrefectApiError(
                f"the Prefect API at {configured} did not answer ({reason}): start it "
                "(prefect server start) or fix PREFECT_API_URL; nothing was run"
            )
        yield PrefectApi(configured)
        return
    previous = os.environ.get("PREFECT_API_URL")
    local = _local_address(settings)
    if unreachable(local) is None:
        announce(
            f"Using the Prefect server already running at {local} "
            "(set PREFECT_API_URL to use another)"
        )
        _use(local)
        try:
            yield PrefectApi(local, reused=True)
        finally:
            _forget(previous)
        return
    if not settings.server.ephemeral.enabled:
        raise PrefectApiError(
            "no Prefect API: PREFECT_API_URL is not set, no server answers at "
            f"{local}, and temporary servers are off (PREFECT_SERVER_EPHEMERAL_ENABLED): "
            "start one with 'prefect server start' and set PREFECT_API_URL; nothing was run"
        )
    server = TemporaryServer(settings, announce=announce)
    try:
        server.prepare()
        server.launch()
        _use(server.url)
        yield PrefectApi(server.url, server=server)
    finally:
        server.stop()
        _forget(previous)
