"""Benchmark 1, at the limit: a matrix of the limit shapes providers really have.

The emulator (its own process) limits a Voiceflow-shaped API in each shape issue 14 lists; the
same conversations run through the same runner (``run_conversations``) under three policies, side
by side in one run, with the limit never given to any of them:

- ``prefect-sessions``: the HTTP engine, learning the limit from what the server says;
- ``tenacity``: raw httpx, exponential backoff with full jitter, ``Retry-After`` ignored;
- ``sdk``: raw httpx, openai-python's policy (2 retries, 0.5 s base).

Cases (``--cases``):

- ``headers``: a fixed window of R per second, ``X-RateLimit-*`` on every answer (Voiceflow);
- ``retry-after``: the same window, ``Retry-After`` on a 429 and nothing else (LiveAvatar-like);
- ``bucket``: a token bucket of R per second, burst 5, a bare 429;
- ``inflight``: at most 4 requests in flight, a bare 429 (Vectara's "too many concurrent");
- ``halved``: the bucket, whose rate halves for 20 s, 10 s into the run, then comes back.

Ideal makespan = requests that succeeded / R; for ``halved``, the time the changing limit needs
for them. For ``inflight`` it is requests x latency / slots with the latency the emulator really
serves at: an ``oracle`` told the limit (a semaphore of 4 around raw httpx) runs the same
conversations first, and its time per request sets the latency (``nominal_ratio`` uses the
configured 30 ms instead; even the oracle is about 1.3 times that on 2 cores, since the emulator's
own work adds to every answer). Run: ``python -m benchmarks.at_limit``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.baselines import RawVoiceflowAdapter
from benchmarks.common import (
    API_KEY,
    PROJECT_ID,
    Emulator,
    emit,
    emulator_process,
    goal,
    now,
    write_suite,
)
from prefect_sessions.batch.chunks import connection_settings
from prefect_sessions.conversation.dataset import iter_conversations
from prefect_sessions.conversation.results import ResultStore
from prefect_sessions.conversation.runner import run_conversations
from prefect_sessions.conversation.suite_file import load_suite
from prefect_sessions.http import reset_shared_pacers
from prefect_sessions.run_options import RunOptions
from prefect_sessions.seam.adapter import ConversationAdapter
from prefect_sessions.voiceflow.adapter import VoiceflowAdapter

POLICIES = ("prefect-sessions", "tenacity", "sdk")
COLUMNS = (
    "case",
    "policy",
    "conversations",
    "failed",
    "requests_ok",
    "attempts",
    "answered_429",
    "share_429",
    "makespan_s",
    "ideal_s",
    "makespan_over_ideal",
    "nominal_ratio",
    "recovered_s",
)


@dataclass(frozen=True)
class Case:
    """One limit shape and its goals (share of 429s, makespan / ideal)."""

    name: str
    limit: str  # the emulator's --voiceflow-limit, with {r} for R
    max_429: float
    max_ratio: float
    inflight_slots: int | None = None
    halve: bool = False


#: Requests in flight the ``inflight`` case allows, which only its oracle is told.
ORACLE_SLOTS = 4

CASES = {
    "headers": Case("headers", "{r}/1s", 0.02, 1.10),
    "retry-after": Case("retry-after", "{r}/1s publish=retry-after", 0.03, 1.15),
    "bucket": Case("bucket", "{r}/1s bucket burst=5 publish=none", 0.05, 1.25),
    "inflight": Case("inflight", f"inflight={ORACLE_SLOTS} publish=none", 0.05, 1.25, ORACLE_SLOTS),
    "halved": Case("halved", "{r}/1s bucket burst=5 publish=none", 0.05, 1.25, halve=True),
}
#: When the limit halves, for how long, and how soon after it comes back the goodput must
#: again reach 0.9 of it.
HALVE_AT, HALVE_FOR, RECOVER_WITHIN = 10.0, 20.0, 10.0


def _adapter(policy: str, suite_path: Path, url: str) -> ConversationAdapter:
    if policy == "oracle":
        return RawVoiceflowAdapter(url, API_KEY, PROJECT_ID, "none", slots=ORACLE_SLOTS)
    if policy == "prefect-sessions":
        loaded = load_suite(suite_path)
        # No rate given: the engine learns the limit from what the server says, or from 429s.
        return VoiceflowAdapter(
            connection_settings(
                loaded.suite, RunOptions.of(suite_path=str(suite_path), base_url=url)
            )
        )
    return RawVoiceflowAdapter(url, API_KEY, PROJECT_ID, policy)


async def _one(policy: str, suite_path: Path, url: str, concurrency: int, work: Path) -> float:
    conversations = list(iter_conversations(load_suite(suite_path)))
    store = ResultStore(work / f"{policy}.jsonl")
    reset_shared_pacers()
    started = now()
    async with _adapter(policy, suite_path, url) as adapter:
        await run_conversations(adapter, conversations, concurrency=concurrency, store=store)
    return now() - started


class _Goodput:
    """Samples the emulator's accepted-request count every 0.25 s (a background thread)."""

    def __init__(self, emulator: Emulator) -> None:
        self.samples: list[tuple[float, int]] = []
        self._emulator = emulator
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            totals = self._emulator.totals()
            self.samples.append((now(), totals["requests"] - totals["rate_limited"]))

    def __enter__(self) -> _Goodput:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def recovered_after(self, restored_at: float, limit: float) -> float | None:
        """Seconds from ``restored_at`` until the goodput over the last 2 s reached 0.9 x
        ``limit`` (``None``: never)."""
        for i, (at, count) in enumerate(self.samples):
            if at < restored_at + 2.0:
                continue
            earlier = next((c for t, c in reversed(self.samples[:i]) if t <= at - 2.0), None)
            if earlier is not None and (count - earlier) / 2.0 >= 0.9 * limit:
                return at - restored_at
        return None


@contextmanager
def _halving(emulator: Emulator, full: str, half: str) -> Iterator[Callable[[], float | None]]:
    """Halve the limit ``HALVE_AT`` s after entry for ``HALVE_FOR`` s; yields when it came back
    (``now()`` seconds, or ``None`` if the run ended first)."""
    restored: list[float] = []
    stop = threading.Event()

    def run() -> None:
        if stop.wait(HALVE_AT):
            return
        emulator.set_limit(half)
        if stop.wait(HALVE_FOR):
            return
        emulator.set_limit(full)
        restored.append(now())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield lambda: restored[0] if restored else None
    finally:
        stop.set()
        thread.join(5)
        emulator.set_limit(full)


def _ideal(case: Case, ok: int, limit: int, latency_s: float) -> float:
    if case.inflight_slots:
        return ok * latency_s / case.inflight_slots
    if not case.halve:
        return ok / limit
    # The capacity over time: R until HALVE_AT, R/2 for HALVE_FOR, then R again.
    before = limit * HALVE_AT
    during = limit / 2 * HALVE_FOR
    if ok <= before:
        return ok / limit
    if ok <= before + during:
        return HALVE_AT + (ok - before) / (limit / 2)
    return HALVE_AT + HALVE_FOR + (ok - before - during) / limit


def run_case(
    case: Case,
    sizes: tuple[int, ...],
    policies: tuple[str, ...],
    *,
    concurrency: int,
    limit: int,
    latency_ms: float,
) -> list[dict[str, Any]]:
    """Every size under every policy against one emulator limited in ``case``'s shape."""
    rows: list[dict[str, Any]] = []
    full = case.limit.format(r=limit)
    with (
        tempfile.TemporaryDirectory() as tmp,
        emulator_process(voiceflow_limit=full, latency_ms=latency_ms) as emulator,
    ):
        for size in sizes:
            work = Path(tmp) / str(size)
            suite_path = write_suite(work, size, base_url=emulator.url, concurrency=concurrency)
            served_latency = latency_ms / 1000.0
            for policy in ("oracle", *policies) if case.inflight_slots else policies:
                emulator.reset()
                recovered: float | None = None
                if case.halve:
                    half = case.limit.format(r=max(1, limit // 2))
                    with _Goodput(emulator) as goodput, _halving(emulator, full, half) as back:
                        makespan = asyncio.run(
                            _one(policy, suite_path, emulator.url, concurrency, work)
                        )
                    restored_at = back()
                    if restored_at is not None:
                        recovered = goodput.recovered_after(restored_at, limit)
                else:
                    makespan = asyncio.run(
                        _one(policy, suite_path, emulator.url, concurrency, work)
                    )
                totals = emulator.totals()
                latest = ResultStore(work / f"{policy}.jsonl").latest()
                ok = totals["requests"] - totals["rate_limited"] - totals["faults"]
                if policy == "oracle":
                    served_latency = makespan * ORACLE_SLOTS / ok
                ideal = _ideal(case, ok, limit, served_latency)
                nominal = _ideal(case, ok, limit, latency_ms / 1000.0)
                rows.append(
                    {
                        "case": case.name,
                        "policy": policy,
                        "conversations": len(latest),
                        "failed": sum(1 for r in latest.values() if r.status != "passed"),
                        "requests_ok": ok,
                        "attempts": totals["requests"],
                        "answered_429": totals["rate_limited"],
                        "share_429": totals["rate_limited"] / max(1, totals["requests"]),
                        "makespan_s": makespan,
                        "ideal_s": ideal,
                        "makespan_over_ideal": makespan / ideal if ideal else float("inf"),
                        "nominal_ratio": makespan / nominal if nominal else float("inf"),
                        "recovered_s": "" if not case.halve else recovered,
                    }
                )
    return rows


def _goals(case: Case, row: dict[str, Any]) -> list[dict[str, Any]]:
    where = f"{case.name}, {row['conversations']} conversations"
    goals = [
        goal(
            f"{where}: 429s < {case.max_429:.0%} of attempts",
            f"{row['share_429']:.2%}",
            row["share_429"] < case.max_429,
        ),
        goal(f"{where}: 0 failed", row["failed"], row["failed"] == 0),
    ]
    if case.halve:
        recovered = row["recovered_s"]
        goals.append(
            goal(
                f"{where}: goodput back to >= 0.9 R within {RECOVER_WITHIN:g} s of the restore",
                "never" if recovered is None else f"{recovered:.1f} s",
                recovered is not None and recovered <= RECOVER_WITHIN,
            )
        )
    else:
        goals.append(
            goal(
                f"{where}: makespan / ideal <= {case.max_ratio:.2f}",
                round(row["makespan_over_ideal"], 3),
                row["makespan_over_ideal"] <= case.max_ratio,
            )
        )
    return goals


def run(
    sizes: tuple[int, ...] = (60, 600),
    cases: tuple[str, ...] = tuple(CASES),
    policies: tuple[str, ...] = POLICIES,
    concurrency: int = 16,
    limit: int = 20,
    latency_ms: float = 30.0,
    halved_conversations: int = 250,
) -> dict[str, Any]:
    """Run the matrix; the report (rows, and goals for prefect-sessions' rows)."""
    rows: list[dict[str, Any]] = []
    goals: list[dict[str, Any]] = []
    for name in cases:
        case = CASES[name]
        case_sizes = (halved_conversations,) if case.halve else sizes
        case_rows = run_case(
            case,
            case_sizes,
            policies,
            concurrency=concurrency,
            limit=limit,
            latency_ms=latency_ms,
        )
        rows.extend(case_rows)
        for row in case_rows:
            if row["policy"] == "prefect-sessions":
                goals.extend(_goals(case, row))
    return {
        "benchmark": "at_limit",
        "settings": {
            "sizes": list(sizes),
            "halved_conversations": halved_conversations,
            "cases": {name: CASES[name].limit.format(r=limit) for name in cases},
            "concurrency": concurrency,
            "limit_per_second": limit,
            "latency_ms": latency_ms,
        },
        "rows": rows,
        "goals": goals,
    }


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="60,600", help="conversations per run (60,600)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"of {', '.join(CASES)}")
    parser.add_argument("--policies", default=",".join(POLICIES), help=f"of {', '.join(POLICIES)}")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--limit", type=int, default=20, help="R, requests per second")
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--halved-conversations", type=int, default=250)
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    started = time.monotonic()
    report = run(
        sizes=tuple(int(size) for size in _names(args.sizes)),
        cases=_names(args.cases),
        policies=_names(args.policies),
        concurrency=args.concurrency,
        limit=args.limit,
        latency_ms=args.latency_ms,
        halved_conversations=args.halved_conversations,
    )
    emit(
        f"At the limit: R={args.limit}/s (in flight: 4 slots), {args.latency_ms:g} ms latency, "
        f"concurrency {args.concurrency}, never given to the client "
        f"({time.monotonic() - started:.0f} s)",
        report,
        COLUMNS,
        args.json,
    )


if __name__ == "__main__":
    main()
