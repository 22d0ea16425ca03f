"""The Prefect API watch of a CLI run: a silence is reported once, a short one is ridden out, a long
one ends the run with one line (pings and clock injected; one real closed port)."""

from __future__ import annotations

import socket
import threading

from prefect_sessions.api_watch import ApiWatch, unreachable


class Script:
    """Ping answers in order, and a clock that moves 2 s per ping."""

    def __init__(self, answers: list[str | None]) -> None:
        self.answers = answers
        self.now = 0.0

    def ping(self) -> str | None:
        self.now += 2.0
        return self.answers.pop(0)

    def clock(self) -> float:
        return self.now


def drive(script: Script, outage: float = 10.0) -> tuple[list[str], list[str]]:
    lost: list[str] = []
    changes: list[str] = []
    watch = ApiWatch(
        "http://127.0.0.1:1/api",
        lost.append,
        on_change=changes.append,
        outage_seconds=outage,
        ping=script.ping,
        clock=script.clock,
    )
    silent_since: float | None = None
    while script.answers and not lost:
        silent_since, line = watch.check(silent_since)
        if line is not None:
            lost.append(line)
    return lost, changes


def test_a_short_silence_is_ridden_out():
    lost, _ = drive(Script([None, "connection refused", "connection refused", None, None]))
    assert lost == []


def test_a_long_silence_gives_one_line_naming_the_api_and_the_cause():
    lost, _ = drive(Script([None] + ["connection refused"] * 10))
    assert len(lost) == 1
    assert lost[0] == (
        "the Prefect API at http://127.0.0.1:1/api did not answer for 10 s (connection refused)"
    )


def test_the_silence_is_counted_from_its_first_failed_ping():
    # Answers in between restart the count: 4 failures, an answer, 4 failures never reach 10 s.
    answers = ["timed out"] * 4 + [None] + ["timed out"] * 4
    lost, _ = drive(Script(answers))
    assert lost == []


def test_the_thread_reports_silence_and_recovery_once_each():
    answers = [None, "connection refused", "connection refused", None, None]
    script = Script(list(answers))
    played = threading.Event()

    def ping() -> str | None:
        if not script.answers:
            played.set()
            return None
        return script.ping()

    lost: list[str] = []
    changes: list[str] = []
    watch = ApiWatch(
        "http://127.0.0.1:1/api",
        lost.append,
        on_change=changes.append,
        outage_seconds=10.0,
        ping_seconds=0.001,
        ping=ping,
        clock=script.clock,
    )
    with watch:
        assert played.wait(timeout=10)
    assert lost == []
    assert len(changes) == 2
    assert "stopped answering" in changes[0]
    assert changes[1] == "the Prefect API at http://127.0.0.1:1/api answers again"
    assert watch.silent is False


def test_a_closed_port_is_named_as_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert unreachable(f"http://127.0.0.1:{port}/api") == "connection refused"
