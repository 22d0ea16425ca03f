"""The pacer registry a run owns: one pacer per key inside it, nothing shared with other runs."""

from __future__ import annotations

import pickle
import threading

from pydantic import SecretStr

from prefect_sessions.http import HttpClient, SecretHeaderAuth
from prefect_sessions.http.pacers import Pacers, default_pacers, reset_shared_pacers
from prefect_sessions.http.shared_pacing import REDIS_URL_ENV, RedisPacer

URL = "https://api.example.test"


def _client(pacers: Pacers | None, rate: float | None = None) -> HttpClient:
    auth = SecretHeaderAuth("authorization", SecretStr("VF.DM.same-key"))
    return HttpClient(provider="X", base_url=URL, auth=auth, rate=rate, pacers=pacers)


def test_clients_of_one_run_share_one_pacer_per_key_across_threads():
    run = Pacers()
    found: list[object] = []
    threads = [threading.Thread(target=lambda: found.append(_client(run).pacer)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(pacer) for pacer in found}) == 1


def test_a_lowered_rate_applies_to_the_run_that_asked_for_it_only():
    first, second = Pacers(), Pacers()
    slow = _client(first, rate=2.0)
    unlimited = _client(second)
    assert slow.pacer.rate == 2.0
    assert unlimited.pacer.rate is None
    # Within the run, a later client with a lower rate lowers the run's pacer (never raises it).
    assert _client(first, rate=5.0).pacer.rate == 2.0
    assert _client(first, rate=1.0).pacer.rate == 1.0
    assert unlimited.pacer.rate is None


def test_clients_made_outside_a_run_share_the_process_registry():
    reset_shared_pacers()
    pacer = _client(None).pacer
    assert _client(None).pacer is pacer
    fingerprint = SecretHeaderAuth("authorization", SecretStr("VF.DM.same-key")).fingerprint
    assert default_pacers().get(URL, fingerprint) is pacer
    assert _client(Pacers()).pacer is not pacer


def test_a_run_reads_the_redis_url_once_when_it_starts():
    url = "redis://127.0.0.1:6379/0"
    environ = {REDIS_URL_ENV: url}
    run = Pacers.for_run(environ)
    environ.pop(REDIS_URL_ENV)  # a later change of the environment does not move the run
    assert run.redis_url == url
    assert isinstance(run.get(URL, "fingerprint"), RedisPacer)
    assert Pacers.for_run({}).redis_url is None


def test_a_registry_handed_to_a_task_is_itself_in_this_process_and_a_twin_elsewhere():
    url = "redis://127.0.0.1:6379/0"
    run = Pacers.for_run({REDIS_URL_ENV: url})
    assert pickle.loads(pickle.dumps(run)) is run
    # In another process the id is unknown: a new registry on the same Redis.
    _, (registry_id, redis_url) = run.__reduce__()
    from prefect_sessions.http.pacers import _attach

    twin = _attach(-registry_id, redis_url)
    assert twin is not run
    assert twin.redis_url == url
