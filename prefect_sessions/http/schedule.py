"""When the next request may leave: even spacing at a rate, and pauses.

One part of a :class:`~prefect_sessions.http.pacing.Pacer` (which holds the lock around it).
Spacing is a GCRA-style next slot: each grant takes the slot and moves it one interval on. A
pause (a 429's ``Retry-After``, an exhausted published window, a refused probe's backoff) holds
every slot until it ends. When the schedule changes (a lower rate, a pause) its epoch moves on,
so slots reserved under the old one are taken again rather than used at the old spacing.
"""

from __future__ import annotations


class Schedule:
    """The next free slot, the pause, and the epoch of one pacer's schedule."""

    def __init__(self) -> None:
        self.next_slot = 0.0
        self.hold_until = 0.0
        self.epoch = 0
        self.last_sent = float("-inf")

    def take(self, now: float, rate: float | None) -> float:
        """The time the next grant may be used at; the slot after it is one interval later."""
        at = max(now, self.next_slot, self.hold_until)
        self.next_slot = at + (1.0 / rate if rate else 0.0)
        return at

    def take_for_probe(self, now: float, rate: float | None) -> float:
        """A probe keeps to the pause, and to the spacing when there is a rate (the next grant
        one interval after it)."""
        at = max(now, self.hold_until)
        if rate:
            at = max(at, self.next_slot)
            self.next_slot = at + 1.0 / rate
        return at

    def left_late(self, now: float, rate: float | None) -> None:
        """A probe left at ``now``, maybe later than its slot: the next one interval after."""
        if rate:
            self.next_slot = max(self.next_slot, now + 1.0 / rate)

    def hold(self, until: float) -> bool:
        """Pause every slot until ``until``; whether that moved the pause later."""
        if until > self.hold_until:
            self.hold_until = until
            return True
        return False

    def restart(self, rate: float | None) -> None:
        """The schedule changed: a new epoch, the next slot one interval after the last send."""
        self.epoch += 1
        self.next_slot = self.last_sent + (1.0 / rate if rate else 0.0)
