"""The pacer's parts, each on its own: the schedule, a published window, probing, requests in
flight. The composed pacer's behaviour is tested in ``tests/integration/http``."""

from __future__ import annotations

import asyncio

import pytest

from prefect_sessions.http.in_flight import InFlight
from prefect_sessions.http.quota_window import QuotaWindow
from prefect_sessions.http.recovery import FIRST_PROBE_BACKOFF, MAX_PROBE_BACKOFF, Recovery
from prefect_sessions.http.refill_quota import RefillingQuota
from prefect_sessions.http.schedule import Schedule


def test_the_schedule_spaces_grants_at_the_rate_and_keeps_to_a_pause():
    schedule = Schedule()
    assert [schedule.take(10.0, 4.0) for _ in range(3)] == [10.0, 10.25, 10.5]
    assert schedule.hold(12.0) is True
    assert schedule.hold(11.0) is False  # a pause only moves later
    assert schedule.take(10.6, 4.0) == 12.0
    assert schedule.take(10.6, None) == 12.25  # unpaced: the next slot stays where it was


def test_a_restarted_schedule_has_a_new_epoch_and_spaces_from_the_last_send():
    schedule = Schedule()
    schedule.last_sent = 5.0
    schedule.take(5.0, 1.0)
    schedule.restart(2.0)
    assert (schedule.epoch, schedule.next_slot) == (1, 5.5)


def test_a_probe_keeps_to_the_spacing_only_when_there_is_a_rate():
    schedule = Schedule()
    schedule.next_slot = 20.0
    assert schedule.take_for_probe(10.0, None) == 10.0
    assert schedule.take_for_probe(10.0, 2.0) == 20.0
    assert schedule.next_slot == 20.5
    schedule.left_late(30.0, 2.0)
    assert schedule.next_slot == 30.5


def test_a_window_learns_its_rate_and_lets_no_more_leave_than_remain():
    window = QuotaWindow(safety=0.95)
    assert window.wait(0.0, in_flight=0) == 0.0  # nothing published: no wait
    slower, pause = window.learn(0.0, limit=20, remaining=2, reset_seconds=1.0, spent_since=0)
    assert slower is True
    assert pause is None
    assert window.rate == pytest.approx(19.0)
    assert window.wait(0.1, in_flight=0) == 0.0
    assert window.wait(0.2, in_flight=1) == 0.0
    assert window.wait(0.3, in_flight=2) == pytest.approx(0.7)  # full until it ends at 1.0
    # A new window counts the requests still in flight against it.
    assert window.wait(1.0, in_flight=19) == 0.0
    assert window.wait(1.1, in_flight=19) == pytest.approx(0.9)


def test_a_window_counts_what_left_after_the_answered_request_and_takes_the_tighter_answer():
    window = QuotaWindow()
    window.learn(0.0, limit=10, remaining=5, reset_seconds=1.0, spent_since=2)
    assert window.left == 3
    window.learn(0.02, limit=10, remaining=6, reset_seconds=0.99, spent_since=0)  # same window
    assert window.left == 3
    window.learn(1.0, limit=10, remaining=9, reset_seconds=1.0, spent_since=0)  # a later one
    assert window.left == 9


def test_an_exhausted_window_with_no_limit_pauses_until_it_ends():
    _, pause = QuotaWindow().learn(3.0, limit=None, remaining=0, reset_seconds=2.0, spent_since=0)
    assert pause == 5.0


def test_a_token_window_counts_the_cost_of_each_request():
    window = QuotaWindow()
    window.learn(0.0, limit=1000, remaining=500, reset_seconds=60.0, spent_since=0)
    assert window.wait(0.1, in_flight=0, cost=400) == 0.0
    assert window.left == 100
    assert window.wait(0.2, in_flight=0, cost=400) == 0.0  # room left: it goes, and overdraws
    assert window.wait(0.3, in_flight=0, cost=1) == pytest.approx(59.7)


def test_only_one_probe_at_a_time_until_the_first_answer():
    recovery = Recovery()
    assert recovery.probing
    assert recovery.take_probe() is True
    assert recovery.take_probe() is False
    assert recovery.probe_answered() is True  # the first answer: discovery ends
    assert not recovery.probing
    assert recovery.probe_answered() is False


def test_after_a_lowering_the_probe_waits_for_the_send_log_and_backs_off_while_refused():
    recovery = Recovery(discovered=True)
    for at in (0.0, 0.1, 0.2, 0.3):
        recovery.sent(at)
    recovery.lowered(0.35)
    assert recovery.sent_before_lowering(0.3)
    assert not recovery.sent_before_lowering(0.4)
    # Two allowed per second: the probe waits until the second-newest send is a second old.
    assert recovery.log_wait(0.4, probe=True, rate=2.0, exact=False) == pytest.approx(0.8)
    assert recovery.log_wait(0.4, probe=False, rate=2.0, exact=False) == 0.0
    assert recovery.log_wait(0.4, probe=True, rate=2.0, exact=True) == 0.0
    assert recovery.probe_refused(1.0) == pytest.approx(1.0 + FIRST_PROBE_BACKOFF)
    assert recovery.probe_refused(2.0) == pytest.approx(2.0 + 2 * FIRST_PROBE_BACKOFF)
    for _ in range(10):
        until = recovery.probe_refused(3.0)
    assert until == pytest.approx(3.0 + MAX_PROBE_BACKOFF)
    assert recovery.got_through(0.3) is False  # sent before the lowering: proves nothing
    assert recovery.got_through(1.5) is True
    assert not recovery.probing


async def test_waiters_are_woken_on_their_own_loop_from_another_thread():
    in_flight = InFlight()
    loop, waiter = in_flight.wait_for_place()
    await asyncio.to_thread(in_flight.wake_all)
    await asyncio.wait_for(waiter, 1.0)
    in_flight.forget(loop, waiter)
    assert in_flight.waiters == []


def test_a_refilling_quota_learns_its_rate_from_one_answer_and_lets_a_full_bucket_go_at_once():
    quota = RefillingQuota(safety=1.0)
    assert quota.wait(0.0, 500) == 0.0  # nothing published yet
    # 600 a minute: one spent, full again in 0.1 s, so 10 a second come back.
    quota.learn(0.0, limit=600, remaining=599, reset_seconds=0.1, spent_since=0)
    assert quota.rate == pytest.approx(10.0)
    for _ in range(599):  # the rest of the bucket, at once, as the server allows
        assert quota.wait(0.0, 1) == 0.0
        quota.spend(1)
    assert quota.wait(0.0, 1) == pytest.approx(0.1)
    assert quota.wait(0.05, 1) == pytest.approx(0.05)


def test_a_refilling_quota_counts_what_left_after_the_answer_and_waits_for_a_whole_cost():
    quota = RefillingQuota(safety=1.0)
    quota.learn(0.0, limit=1000, remaining=300, reset_seconds=7.0, spent_since=200)
    assert quota.rate == pytest.approx(100.0)
    assert quota.wait(0.0, 100) == 0.0  # 100 left after those in flight
    assert quota.wait(0.0, 400) == pytest.approx(3.0)
    assert quota.wait(0.0, 5000) == pytest.approx(9.0)  # more than the quota: a full bucket


def test_a_share_keeps_the_run_to_its_part_of_a_full_bucket():
    quota = RefillingQuota(safety=1.0)
    quota.learn(0.0, limit=100, remaining=99, reset_seconds=0.1, spent_since=0)  # 10/s
    sent = 0
    while quota.wait(0.0, 1, share=0.5) == 0.0:
        quota.spend(1)
        sent += 1
    assert sent == 50
    assert quota.wait(0.0, 1, share=0.5) == pytest.approx(0.2)  # its half of the refill
