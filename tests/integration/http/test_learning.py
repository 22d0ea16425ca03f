"""Limits learned from the answers alone: properties of the estimators, and the pacer converging
on every shape of limit, simulated on virtual time (tests/support/virtual_time.py)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prefect_sessions.emulator.config import RateLimit
from prefect_sessions.http import Pacer
from prefect_sessions.http.learning import (
    BETA,
    CLIMB_SECONDS,
    MIN_RATE,
    ConcurrencyEstimate,
    Measured,
    RateState,
    next_rate_state,
    rate_limit_evident,
)
from tests.support.virtual_time import Traffic, run_virtual, simulate

# -- the estimators on their own ----------------------------------------------------------------


@given(
    ceiling=st.floats(min_value=0.6, max_value=10_000),
    elapsed=st.floats(min_value=0, max_value=600),
    provisional=st.booleans(),
)
def test_a_learned_rate_starts_at_beta_of_the_ceiling_and_only_climbs(
    ceiling: float, elapsed: float, provisional: bool
) -> None:
    state = RateState(ceiling=ceiling, since=100.0, provisional=provisional)
    assert state.rate(100.0) == pytest.approx(max(MIN_RATE, BETA * ceiling))
    assert state.rate(100.0 + elapsed) >= state.rate(100.0) - 1e-9
    assert state.rate(100.0 + elapsed, probe=False) <= max(MIN_RATE, ceiling) + 1e-9


def test_the_climb_is_flat_near_the_ceiling_and_back_at_it_after_climb_seconds() -> None:
    state = RateState(ceiling=20.0, since=0.0)
    assert state.rate(CLIMB_SECONDS) == pytest.approx(20.0)
    # The cubic dwells near the ceiling: half a second either side moves it by under 1%.
    assert abs(state.rate(CLIMB_SECONDS + 0.5) - 20.0) < 0.2
    assert abs(state.rate(CLIMB_SECONDS - 0.5) - 20.0) < 0.2
    assert state.rate(CLIMB_SECONDS + 4) > 24  # then probes upward, to find a raised limit


@given(
    rate_at_send=st.floats(min_value=1, max_value=1000),
    goodput=st.floats(min_value=0, max_value=2000),
    whole=st.booleans(),
)
def test_a_429_lowers_the_rate_by_at_most_beta_and_never_raises_it(
    rate_at_send: float, goodput: float, whole: bool
) -> None:
    measured = Measured(goodput=goodput, sent=rate_at_send / 2, whole_second=whole)
    state, changed = next_rate_state(
        None, 10.0, sent_at=9.9, rate_at_send=rate_at_send, measured=measured
    )
    assert changed
    assert state is not None
    assert state.ceiling <= max(rate_at_send, MIN_RATE / BETA) + 1e-9
    assert state.ceiling >= min(rate_at_send, BETA * rate_at_send) - 1e-9
    assert state.provisional is not whole


@given(
    rate_at_send=st.floats(min_value=1, max_value=1000),
    limit=st.floats(min_value=1, max_value=1000),
)
def test_a_whole_second_sent_far_over_the_limit_measures_the_limit_itself(
    rate_at_send: float, limit: float
) -> None:
    accepted = min(limit, rate_at_send)
    measured = Measured(goodput=accepted, sent=rate_at_send, whole_second=True, paced=rate_at_send)
    state, _ = next_rate_state(None, 5.0, sent_at=4.9, rate_at_send=rate_at_send, measured=measured)
    assert state is not None
    assert not state.provisional
    if accepted < BETA * rate_at_send - 1:  # far over the limit: what got through is it
        assert state.ceiling == pytest.approx(max(accepted, MIN_RATE / BETA))
    else:  # just over it: lowered by the factor beta at most
        expected = max(min(rate_at_send, max(accepted, BETA * rate_at_send)), MIN_RATE / BETA)
        assert state.ceiling == pytest.approx(expected)


def test_a_429_for_a_request_sent_before_the_last_decrease_is_the_same_overshoot() -> None:
    measured = Measured(goodput=18.0, sent=20.0, whole_second=True, paced=20.0)
    first, _ = next_rate_state(None, 10.0, sent_at=9.9, rate_at_send=20.0, measured=measured)
    again, changed = next_rate_state(
        first, 10.1, sent_at=9.95, rate_at_send=20.0, measured=measured
    )
    assert not changed
    assert again == first


def test_a_refused_request_shows_a_concurrency_limit_only_above_the_successes() -> None:
    estimate = ConcurrencyEstimate()
    for level in (1, 2, 3, 4, 4, 3):
        estimate.accepted(0.0, level)
    assert estimate.explains(0.1, 6)
    assert not estimate.explains(0.1, 3)  # refused among successes at the same level: a rate
    assert not estimate.explains(0.1, 1)
    estimate.refused(0.1, 6)
    assert estimate.cap == 5
    estimate.refused(0.2, 5)
    assert estimate.cap == 4  # never raised by a later, higher refusal
    estimate.refused(0.3, 9)
    assert estimate.cap == 4


def test_a_second_sent_at_the_rate_with_far_less_through_shows_a_rate_limit() -> None:
    shown = Measured(goodput=20.0, sent=28.0, whole_second=True, paced=28.0)
    assert rate_limit_evident(shown, 28.0)
    assert not rate_limit_evident(shown, None)  # unpaced: no rate to compare with
    assert not rate_limit_evident(Measured(20.0, 28.0, whole_second=False, paced=28.0), 28.0)
    assert not rate_limit_evident(Measured(20.0, 10.0, whole_second=True, paced=28.0), 28.0)
    assert not rate_limit_evident(Measured(26.0, 28.0, whole_second=True, paced=28.0), 28.0)


# -- the pacer on simulated providers -----------------------------------------------------------


def _run(limit: object, seconds: float, **options: object) -> tuple[Traffic, Pacer, float]:
    def shape(elapsed: float) -> RateLimit:
        return limit(elapsed) if callable(limit) else limit  # type: ignore[no-any-return]

    async def main(clock):  # type: ignore[no-untyped-def]
        pacer = Pacer(clock=clock)
        start = clock()
        traffic = await simulate(clock, pacer, shape, seconds=seconds, **options)  # type: ignore[arg-type]
        return traffic, pacer, start

    return run_virtual(main)


@pytest.mark.parametrize("used_before", [0.0, 0.6, 0.95])
@pytest.mark.parametrize("limit", [10, 20, 50])
def test_a_published_limit_is_never_exceeded_from_the_first_window(
    limit: int, used_before: float
) -> None:
    # The first answer may come in the middle of a window (the key was used just before): its
    # reset is short, so the rate looks higher than it is until a whole window has been seen.
    traffic, pacer, start = _run(RateLimit(limit, 1.0), 20, publish=True, used_before=used_before)
    assert traffic.share_refused() == 0.0
    assert pacer.rate is not None
    assert pacer.rate <= limit
    assert traffic.goodput(start + 5, start + 20) >= 0.9 * limit


@pytest.mark.parametrize(
    "shape",
    [
        RateLimit(20, 1.0, publish="none"),
        RateLimit(20, 1.0, counting="sliding", publish="none"),
        RateLimit(20, 1.0, counting="bucket", burst=5, publish="none"),
        RateLimit(50, 1.0, counting="bucket", burst=5, publish="none"),
        RateLimit(8, 1.0, counting="bucket", burst=1, publish="none"),
    ],
    ids=["fixed-20", "sliding-20", "bucket-20", "bucket-50", "bucket-8"],
)
def test_a_rate_limit_nobody_publishes_is_found_from_the_429s(shape: RateLimit) -> None:
    traffic, pacer, start = _run(shape, 60)
    rate = shape.limit / shape.window_seconds
    goodput = traffic.goodput(start + 20, start + 60)
    assert 0.85 * rate <= goodput <= 1.05 * rate + shape.capacity / 40
    assert traffic.share_refused(since=start + 20) < 0.05
    assert pacer.max_in_flight is None or pacer.max_in_flight >= 2  # a rate, not a cap


def test_the_first_full_window_costs_only_the_requests_already_in_flight() -> None:
    # A fixed window that says nothing (Retry-After floored to 0 in a 1-s window): the run's
    # first window fills while a few requests are in flight, and is refused until it ends. The
    # probe that looks for its end waits for the last second to hold no more than the learned
    # rate, so no probe is sent into the full window.
    traffic, _, start = _run(RateLimit(20, 1.0, publish="none"), 3)
    refused = [at for at, ok in traffic.attempts if not ok and at < start + 1.0]
    assert refused
    assert max(refused) - min(refused) < 0.03  # one round trip: those in flight at the fill


def test_a_rate_limit_at_low_rate_is_not_taken_for_a_concurrency_limit() -> None:
    # At 28/s and 30 ms a request rarely has company in flight. One refused with two in flight,
    # after a second sent at 28/s of which only 23 got through, shows the rate: taking it for a
    # limit of one request in flight would stall the run (seen in benchmarks/at_limit).
    now = [0.0]
    pacer = Pacer(rate=None, clock=lambda: now[0])
    pacer._recovery.discovered = True  # skip the first probe: this checks the attribution only

    def answer(at: float, status: int, in_flight: int) -> None:
        now[0] = at
        grant = pacer._grant(False, None)
        grant.rate, grant.sent_at, grant.in_flight = 28.0, at - 0.03, in_flight
        pacer.observe(grant, status=status, headers={})

    for i in range(24):
        answer(0.04 * i, 200, 1)
    answer(1.0, 429, 2)
    assert pacer.max_in_flight is None or pacer.max_in_flight >= 2
    assert pacer.rate is not None
    assert pacer.rate <= 23


@pytest.mark.parametrize("slots", [2, 4, 8])
def test_a_limit_on_requests_in_flight_becomes_a_cap(slots: int) -> None:
    traffic, pacer, start = _run(RateLimit(slots, counting="inflight", publish="none"), 20)
    assert pacer.max_in_flight in (slots, slots + 1)  # probing one above now and then
    assert traffic.share_refused(since=start + 5) < 0.05
    assert traffic.goodput(start + 5, start + 20) >= 0.85 * slots / 0.03


def test_a_halved_limit_is_followed_down_and_back_up_within_seconds() -> None:
    def shape(elapsed: float) -> RateLimit:
        rate = 10 if 20 <= elapsed < 40 else 20
        return RateLimit(rate, 1.0, counting="bucket", burst=5, publish="none")

    traffic, _, start = _run(shape, 60)
    assert traffic.goodput(start + 25, start + 40) <= 10.5  # down within 5 s of the drop
    assert traffic.goodput(start + 48, start + 60) >= 0.9 * 20  # back within 8 s
    assert traffic.share_refused() < 0.05


@given(
    share=st.floats(min_value=0.1, max_value=1.0),
    limit=st.integers(min_value=1, max_value=1000),
    window=st.floats(min_value=0.5, max_value=120),
)
def test_a_share_of_a_published_limit_is_exact(share: float, limit: int, window: float) -> None:
    pacer = Pacer(max_share=share)
    pacer._recovery.discovered = True  # skip the probe: this checks the arithmetic only
    grant = pacer._grant(False, None)
    headers = {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(limit - 1),
        "x-ratelimit-reset": f"{window}",
    }
    pacer.observe(grant, status=200, headers=headers)
    assert pacer.rate == pytest.approx(share * 0.95 * limit / window)


def test_a_run_given_half_a_learned_limit_leaves_the_other_half() -> None:
    async def main(clock):  # type: ignore[no-untyped-def]
        pacer = Pacer(clock=clock, max_share=0.5)
        start = clock()
        shape = RateLimit(20, 1.0, counting="bucket", burst=5, publish="none")
        traffic = await simulate(clock, pacer, lambda _: shape, seconds=60)
        return traffic, start

    traffic, start = run_virtual(main)
    assert traffic.goodput(start + 20, start + 60) <= 0.55 * 20
    assert not math.isnan(traffic.share_refused())
    assert traffic.share_refused(since=start + 20) == 0.0  # it never probes past its share
