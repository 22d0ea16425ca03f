"""Probing: one request alone finds out what the server allows, at the start and after a 429.

One part of a :class:`~prefect_sessions.http.pacing.Pacer`:

- until the first answer arrives, only one request (the probe) is in flight, so a burst of
  concurrent conversations cannot overrun a limit nobody has told us yet;
- after a 429 that a rate limit explains, one request at a time probes (backing off while it is
  refused) until one gets through: a full fixed window refuses everything until it ends, whatever
  the rate, and only a success shows that it has;
- the probe after a 429 waits until the last ``HORIZON_SECONDS`` hold no more requests than the
  learned rate allows (a sliding log of sends), counting those sent before the rate was lowered:
  a probe sent into a window that a burst filled only collects another 429.
"""

from __future__ import annotations

import math
from collections import deque

from prefect_sessions.http.learning import HORIZON_SECONDS

#: After a 429 the first probe goes one interval later; while probes are refused the wait is
#: this, then doubled, up to the longest. A full window refuses everything until it ends, so probing
#: faster only collects more 429s.
FIRST_PROBE_BACKOFF = 0.3
MAX_PROBE_BACKOFF = 8.0


class Recovery:
    """Whether requests go one at a time (discovering, or recovering from a 429), and when the
    recovering probe may leave."""

    def __init__(self, *, discovered: bool = False) -> None:
        self.discovered = discovered
        self.probe_in_flight = False
        #: When the rate was lowered after a 429 (None: not recovering).
        self.recovering_since: float | None = None
        self.backoff = 0.0
        #: When the requests of the last HORIZON_SECONDS left.
        self.sent_log: deque[float] = deque()

    @property
    def probing(self) -> bool:
        """Requests go one at a time."""
        return not self.discovered or self.recovering_since is not None

    def take_probe(self) -> bool:
        """The probe's place, if free."""
        if self.probe_in_flight:
            return False
        self.probe_in_flight = True
        return True

    def sent(self, now: float) -> None:
        self.sent_log.append(now)

    def log_wait(self, now: float, *, probe: bool, rate: float | None, exact: bool) -> float:
        """As a request is about to leave: how long a probe after a 429 must wait so that the
        last ``HORIZON_SECONDS`` hold no more requests than ``rate`` allows (0: now). Only the
        probe waits: the requests after it are spaced at the rate, and a pause for them would
        make the next second's measure of the limit count the pause instead. An ``exact`` rate
        (published or given) needs no log: its even spacing is enough."""
        log = self.sent_log
        while log and log[0] <= now - HORIZON_SECONDS:
            log.popleft()
        if not probe or self.recovering_since is None or exact or rate is None:
            return 0.0
        allowed = max(1, math.ceil(rate * HORIZON_SECONDS))
        if len(log) < allowed:
            return 0.0
        return log[len(log) - allowed] + HORIZON_SECONDS - now

    def lowered(self, now: float) -> None:
        """A 429 lowered the rate: probe until a request gets through."""
        self.recovering_since = now
        self.backoff = 0.0  # the first probe goes one interval later

    def probe_refused(self, now: float) -> float:
        """The recovering probe was refused (the window is still full): until when to wait
        before the next one."""
        self.backoff = min(MAX_PROBE_BACKOFF, max(FIRST_PROBE_BACKOFF, 2 * self.backoff))
        return now + self.backoff

    def sent_before_lowering(self, sent_at: float) -> bool:
        """Whether a request left before the rate was lowered (part of the overshoot that the
        429 already answered)."""
        return self.recovering_since is not None and sent_at < self.recovering_since

    def got_through(self, sent_at: float) -> bool:
        """A request sent after the rate was lowered was accepted: recovery ends."""
        if self.recovering_since is not None and sent_at >= self.recovering_since:
            self.recovering_since = None
            return True
        return False

    def probe_answered(self) -> bool:
        """The probe's answer came; whether it was the very first answer (discovery ends)."""
        self.probe_in_flight = False
        first = not self.discovered
        self.discovered = True
        return first
