"""Each benchmark at a tiny size: it runs and reports its fields (how fast is the benchmarks' job,
never a test's)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from benchmarks import at_limit, flow_profile, growth, overhead, startup, workers

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def quiet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A shared schedule configured on the machine must not leak into a benchmark's own choice.
    monkeypatch.delenv("PREFECT_SESSIONS_REDIS_URL", raising=False)


def _check(report: dict, columns: tuple[str, ...], rows: int) -> None:
    assert len(report["rows"]) == rows
    for row in report["rows"]:
        assert set(columns) <= set(row), set(columns) - set(row)
    assert report["goals"]
    for item in report["goals"]:
        assert {"goal", "value", "met"} <= set(item)


def test_at_limit_compares_three_policies_on_every_shape(quiet_environment: None) -> None:
    cases = ("headers", "retry-after", "bucket", "inflight")
    report = at_limit.run(sizes=(3,), cases=cases, concurrency=3, limit=50, latency_ms=0)
    # One row per case and policy, and the oracle of the in-flight case.
    _check(report, at_limit.COLUMNS, rows=len(cases) * 3 + 1)
    assert [row["case"] for row in report["rows"][:3]] == ["headers"] * 3
    assert [row["policy"] for row in report["rows"][:3]] == list(at_limit.POLICIES)
    ours = report["rows"][0]
    assert ours["conversations"] == 3
    assert ours["requests_ok"] == 3 * 5
    assert {row["policy"] for row in report["rows"] if row["case"] == "inflight"} == {
        "oracle",
        *at_limit.POLICIES,
    }


@pytest.mark.prefect
def test_overhead_compares_flow_with_bare_loop(
    prefect_server: None, quiet_environment: None
) -> None:
    report = overhead.run(conversations=4, concurrency=2, latency_ms=0, rounds=1, own_server=False)
    _check(report, overhead.COLUMNS, rows=4)  # bare, engine, flow, bare on httpcore2's pool
    assert report["rows"][0]["ratio_to_bare"] == 1.0
    assert all(row["requests"] == 4 * 5 for row in report["rows"])


@pytest.mark.prefect
def test_growth_reports_time_and_memory_per_size(
    prefect_server: None, quiet_environment: None
) -> None:
    report = growth.run(sizes=(2, 4), concurrency=2, latency_ms=0, own_server=False)
    _check(report, growth.COLUMNS, rows=2)
    assert [row["passed"] for row in report["rows"]] == [2, 4]
    assert all(row["peak_rss_mb"] > 0 for row in report["rows"])


@pytest.mark.skipif(not _redis_up(), reason="needs Redis on 127.0.0.1:6379")
def test_workers_share_one_schedule(quiet_environment: None) -> None:
    report = workers.run(
        conversations=4, workers=2, concurrency=2, limit=50, latency_ms=0, modes=workers.MODES[:1]
    )
    _check(report, workers.COLUMNS, rows=1)
    row = report["rows"][0]
    assert row["failed"] == 0
    assert row["requests_ok"] == 4 * 5


@pytest.mark.prefect
def test_flow_profile_times_engine_and_flow_side_by_side(
    prefect_server: None, quiet_environment: None, tmp_path: Path
) -> None:
    profile = tmp_path / "flow.prof"
    report = flow_profile.run(
        conversations=4,
        concurrency=2,
        latency_ms=0,
        rounds=2,
        chunk_size=2,
        profile=str(profile),
        own_server=False,
    )
    assert [row["round"] for row in report["rows"]] == [1, 2]
    for row in report["rows"]:
        assert set(flow_profile.COLUMNS) <= set(row)
        assert 0 < row["flow_inside_s"] <= row["flow_s"]
    assert profile.stat().st_size > 0  # the last flow run was profiled


def test_startup_times_the_commands_side_by_side(quiet_environment: None) -> None:
    report = startup.run(rounds=1)
    _check(report, startup.COLUMNS, rows=7)
    assert [row["command"] for row in report["rows"]][:3] == [
        "bare imports",
        "--help",
        "validate (demo suite)",
    ]
    reuse = next(item for item in report["goals"] if "reused" in item["goal"])
    assert "said so: True, temporary server: False" in reuse["value"]
