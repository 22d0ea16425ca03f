"""Which pacer a client gets: one per (base URL, credential) in this process, shared by every
client with the same key, or a Redis-backed one shared across processes and workers when
``PREFECT_SESSIONS_REDIS_URL`` is set (:mod:`prefect_sessions.http.shared_pacing`)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from prefect_sessions.http.pacing import Pacer
from prefect_sessions.http.shared_pacing import DEFAULT_NAMESPACE, redis_pacer_factory

_registry: dict[tuple[str, str], Pacer] = {}
_registry_lock = threading.Lock()

#: Builds the pacer of a (base URL, credential fingerprint, configured rate) on first use.
PacerFactory = Callable[[str, str, "float | None"], Pacer]
_factory: PacerFactory | None = None


def set_pacer_factory(factory: PacerFactory | None) -> None:
    """Build the process's shared pacers with ``factory`` from now on (``None``: the in-process
    :class:`Pacer`, or a Redis-backed one when ``PREFECT_SESSIONS_REDIS_URL`` is set; see
    :mod:`prefect_sessions.http.shared_pacing`). Pacers already built are forgotten."""
    global _factory
    with _registry_lock:
        _factory = factory
        _registry.clear()


def _default_pacer(base_url: str, fingerprint: str, rate: float | None) -> Pacer:
    url = os.environ.get("PREFECT_SESSIONS_REDIS_URL")
    if url:
        return redis_pacer_factory(url)(base_url, fingerprint, rate)
    return Pacer(rate)


def shared_pacer(
    base_url: str, fingerprint: str, rate: float | None = None, *, max_share: float = 1.0
) -> Pacer:
    """The process-wide pacer of one (base URL, credential); created on first use.

    A configured ``rate`` or ``max_share`` given later can only lower the pacer's, never raise
    it, so two blocks with the same key and different settings stay under the stricter one.
    """
    key = (base_url.rstrip("/"), fingerprint)
    with _registry_lock:
        pacer = _registry.get(key)
        if pacer is None:
            pacer = _registry[key] = (_factory or _default_pacer)(key[0], fingerprint, rate)
        elif rate is not None:
            pacer.lower_configured_rate(rate)
        if max_share < 1:
            pacer.lower_share(max_share)
        return pacer


def reset_shared_pacers() -> None:
    """Forget every shared pacer (tests, or after changing a provider's plan)."""
    with _registry_lock:
        _registry.clear()


def use_redis_pacing(url: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
    """Pace every client of this process through the Redis at ``url`` (e.g.
    ``redis://127.0.0.1:6379/0``), shared with every other process that does the same."""
    set_pacer_factory(redis_pacer_factory(url, namespace=namespace))
