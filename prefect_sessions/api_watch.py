"""The Prefect API under a CLI run: refuse to start without it, and stop cleanly when it is gone.

Prefect's client rides out a short outage by itself (it retries each call for about a minute),
and the conversations keep running meanwhile. A server that never comes back is different: every
later call waits out its own minute of retries, and the flow cannot even report that it failed,
so the command would hang for many minutes. :class:`ApiWatch` pings the API from a thread and,
once it has not answered for :data:`OUTAGE_SECONDS`, hands one line to the caller, which stops
the process. Results reach the results file as each conversation ends, so a stop loses nothing
that had a verdict, and ``--run-key`` resumes the rest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

#: How long the API may stay silent before the run stops: longer than the minute Prefect's own
#: client retries a call (2 + 4 + 8 + 16 + 32 s, with jitter), so a brief outage is ridden out.
OUTAGE_SECONDS = 75.0
#: How often the API is pinged while a run goes on.
PING_SECONDS = 2.0
PING_TIMEOUT_SECONDS = 3.0


def unreachable(api_url: str, *, client: httpx.Client | None = None) -> str | None:
    """Why the Prefect API at ``api_url`` does not answer its health check; ``None`` if it does."""
    url = api_url.rstrip("/") + "/health"
    try:
        if client is not None:
            response = client.get(url)
        else:
            response = httpx.get(url, timeout=PING_TIMEOUT_SECONDS)
    except httpx.ConnectError as exc:
        text = str(exc).lower()
        if "name or service not known" in text or "name resolution" in text:
            return "name not resolved"
        return "connection refused" if "refused" in text or "attempts failed" in text else str(exc)
    except httpx.TimeoutException:
        return "timed out"
    except httpx.HTTPError as exc:
        return type(exc).__name__
    if response.status_code >= 500:
        return f"HTTP {response.status_code}"
    return None


class ApiWatch:
    """Pings the Prefect API from a daemon thread; calls ``on_lost`` once with one line when it
    has not answered for ``outage_seconds``.

    Args:
        api_url: ``PREFECT_API_URL``.
        on_lost: called from the watch thread with the line to show (it usually ends the
            process: the run's own calls to the API would hang).
        on_change: called with one line when the API stops answering and when it answers again.
        ping: the health check (injected by tests); returns why it failed, or ``None``.
        clock, wait: monotonic time and a wait that returns early when the watch is stopped.
    """

    def __init__(
        self,
        api_url: str,
        on_lost: Callable[[str], None],
        *,
        on_change: Callable[[str], None] | None = None,
        outage_seconds: float = OUTAGE_SECONDS,
        ping_seconds: float = PING_SECONDS,
        ping: Callable[[], str | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api_url = api_url
        self._on_lost = on_lost
        self._on_change = on_change or (lambda line: None)
        #: Whether the API is silent right now (read from other threads, e.g. a log filter).
        self.silent = False
        self._outage_seconds = outage_seconds
        self._ping_seconds = ping_seconds
        self._ping = ping or (lambda: unreachable(api_url))
        self._clock = clock
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="prefect-api-watch", daemon=True)

    def __enter__(self) -> ApiWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=self._ping_seconds + PING_TIMEOUT_SECONDS + 1)

    def check(self, silent_since: float | None) -> tuple[float | None, str | None]:
        """One ping: the time the silence began (``None``: answering) and, once it lasted
        ``outage_seconds``, the line to report."""
        reason = self._ping()
        now = self._clock()
        if reason is None:
            return None, None
        since = now if silent_since is None else silent_since
        if now - since < self._outage_seconds:
            return since, None
        return since, (
            f"the Prefect API at {self.api_url} did not answer for {now - since:.0f} s ({reason})"
        )

    def _watch(self) -> None:
        silent_since: float | None = None
        while not self._stopped.wait(self._ping_seconds):
            was_silent = silent_since is not None
            silent_since, lost = self.check(silent_since)
            self.silent = silent_since is not None
            if lost is not None:
                self._on_lost(lost)
                return
            if self.silent and not was_silent:
                self._on_change(
                    f"the Prefect API at {self.api_url} stopped answering; conversations go "
                    f"on, and the run stops if it is still silent in {self._outage_seconds:.0f} s"
                )
            elif was_silent and not self.silent:
                self._on_change(f"the Prefect API at {self.api_url} answers again")
