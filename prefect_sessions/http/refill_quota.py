"""A published quota the server refills continuously: OpenAI's requests and tokens per minute.

One part of a :class:`~prefect_sessions.http.pacing.Pacer`. OpenAI (and the endpoints that copy
it: Azure OpenAI, LiteLLM, vLLM behind a gateway) publish each quota as
``x-ratelimit-limit-<unit>``,
``-remaining-<unit>`` and ``-reset-<unit>``, the reset being the time until the quota is whole
again. The quota is therefore a bucket of ``limit`` units refilled at ``(limit - remaining) /
reset`` units per second: one answer with something spent tells the rate, whatever the window
(a minute, a day) is called. Requests and tokens are two such buckets, and either can be the
one that binds.

The bucket is mirrored here: each answer sets what is left (its ``remaining``, less what was
sent after the answered request), it refills at the learned rate (at ``safety``), and a request
leaves only when every bucket holds its cost. A request's token cost is the caller's estimate;
the server counts its own way, and the next answer's ``remaining`` corrects the mirror. A full
bucket may be spent at once, as the server allows: a per-minute quota is not spaced out evenly.

With a ``share`` below 1 the run also keeps its own bucket, that share of the quota's size and
refill, so it leaves the rest to the key's other users however full the server's bucket is.
"""

from __future__ import annotations

#: Units short of a cost that still count as enough (floating-point refills never quite arrive).
EPSILON = 1e-6
#: The shortest wait given: a microsecond.
MIN_WAIT = 1e-6


class RefillingQuota:
    """The mirror of one refilling quota (requests, or tokens)."""

    def __init__(self, *, safety: float = 0.95) -> None:
        self._safety = safety
        #: Units per second the server refills (at ``safety``); ``None`` until learned.
        self.rate: float | None = None
        self.limit: int | None = None
        self._left = 0.0
        self._at = 0.0
        self._share = 1.0
        self._own: float | None = None
        self._own_at = 0.0

    def _refilled(self, now: float) -> float:
        if self.limit is None:
            return 0.0
        gained = (now - self._at) * (self.rate or 0.0)
        self._left = min(float(self.limit), self._left + gained)
        self._at = now
        return self._left

    def learn(
        self,
        now: float,
        *,
        limit: int,
        remaining: int | None,
        reset_seconds: float | None,
        spent_since: float,
    ) -> bool:
        """An answer's published quota, ``spent_since`` being the units sent after the answered
        request (the server may not have counted them yet). Returns whether the rate fell."""
        self._refilled(now)
        self.limit = limit
        slower = False
        if remaining is not None and reset_seconds and remaining < limit:
            learned = self._safety * (limit - remaining) / reset_seconds
            slower = self.rate is not None and learned < self.rate
            self.rate = learned
        if remaining is not None:
            self._left = max(-float(limit), remaining - spent_since)
            self._at = now
        return slower

    def _own_refilled(self, now: float) -> float:
        """The run's own bucket (``share`` of the quota), full when first asked."""
        size = float(self.limit or 0) * self._share
        if self._own is None:
            self._own = size
        self._own = min(size, self._own + (now - self._own_at) * (self.rate or 0.0) * self._share)
        self._own_at = now
        return self._own

    def wait(self, now: float, cost: float, *, share: float = 1.0) -> float:
        """How long a request costing ``cost`` must wait for the bucket to hold it (0: now).
        A cost above the whole quota waits for a full bucket, as the server would refuse it
        otherwise; with no rate learned yet, nothing waits but an empty bucket's refusal."""
        if self.limit is None or cost <= 0 or not self.rate:
            return 0.0
        self._share = share
        needed = min(cost, float(self.limit))
        wait = (needed - self._refilled(now)) / self.rate
        if share < 1:
            own_needed = min(cost, float(self.limit) * share)
            wait = max(wait, (own_needed - self._own_refilled(now)) / (self.rate * share))
        if wait <= EPSILON / self.rate:
            return 0.0
        # Never a wait too short to move a clock: it would be asked again at once.
        return max(wait, MIN_WAIT)

    def spend(self, cost: float) -> None:
        """A request costing ``cost`` left now (after :meth:`wait` said 0)."""
        if self.limit is not None:
            self._left -= cost
            if self._own is not None:
                self._own -= cost
