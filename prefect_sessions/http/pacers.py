"""Which pacer a client gets: one per (base URL, credential) in a registry a run owns.

A run (the batch flow, a shard of it, the triggered flow, the pipeline step) makes its own
:class:`Pacers` with :meth:`Pacers.for_run`, which reads ``PREFECT_SESSIONS_REDIS_URL`` once,
there, and hands it to every client it opens (``ConnectionSettings.pacers``). Inside the run every
client of one key shares one pacer, across threads and event loops; a block's lower
``pacing_rate`` or ``max_share`` lowers that run's pacer only. With Redis, the run's pacers share
one schedule with every other process on the key (:mod:`prefect_sessions.http.shared_pacing`).

Clients made outside any run (a task called from a user's own flow) share the process's default
registry (:func:`default_pacers`), as before runs owned theirs.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from prefect_sessions.http.pacing import Pacer
from prefect_sessions.http.shared_pacing import (
    DEFAULT_NAMESPACE,
    REDIS_URL_ENV,
    check_redis,
    redis_pacer_factory,
)

#: Builds the pacer of a (base URL, credential fingerprint, configured rate) on first use.
PacerFactory = Callable[[str, str, "float | None"], Pacer]

_ids = itertools.count(1)
#: The live registries of this process, so that one handed to a task in a thread of the same
#: process comes back as itself (see ``Pacers.__reduce__``).
_live: weakref.WeakValueDictionary[int, Pacers] = weakref.WeakValueDictionary()


class Pacers:
    """The pacers of one run: one per (base URL, credential), made on first use.

    Args:
        factory: builds each pacer; ``None``: the in-process :class:`Pacer`.
        redis_url: the Redis the factory paces through, if any (checked by :meth:`check`).
    """

    def __init__(
        self, factory: PacerFactory | None = None, *, redis_url: str | None = None
    ) -> None:
        self._factory = factory
        self.redis_url = redis_url
        self._pacers: dict[tuple[str, str], Pacer] = {}
        self._lock = threading.Lock()
        self._id = next(_ids)
        _live[self._id] = self

    @classmethod
    def for_run(cls, environ: Mapping[str, str] | None = None) -> Pacers:
        """A run's registry: shared through the Redis of ``PREFECT_SESSIONS_REDIS_URL`` when it
        is set (read here, once), else in this process."""
        url = (os.environ if environ is None else environ).get(REDIS_URL_ENV) or None
        return cls(redis_pacer_factory(url) if url else None, redis_url=url)

    @classmethod
    def through_redis(cls, url: str, *, namespace: str = DEFAULT_NAMESPACE) -> Pacers:
        """A registry whose pacers share one schedule per key in the Redis at ``url``."""
        return cls(redis_pacer_factory(url, namespace=namespace), redis_url=url)

    def check(self) -> None:
        """Refuse to start a run that cannot share its pacing: its Redis must answer.

        Raises:
            ConfigurationError: one line naming the variable, the URL and the fix.
        """
        if self.redis_url:
            check_redis(self.redis_url)

    def get(
        self, base_url: str, fingerprint: str, rate: float | None = None, *, max_share: float = 1.0
    ) -> Pacer:
        """The pacer of one (base URL, credential); created on first use.

        A configured ``rate`` or ``max_share`` given later can only lower the pacer's, never
        raise it, so two blocks with the same key and different settings stay under the stricter
        one.
        """
        key = (base_url.rstrip("/"), fingerprint)
        with self._lock:
            pacer = self._pacers.get(key)
            if pacer is None:
                make = self._factory or (lambda _url, _key, given: Pacer(given))
                pacer = self._pacers[key] = make(key[0], fingerprint, rate)
            elif rate is not None:
                pacer.lower_configured_rate(rate)
            if max_share < 1:
                pacer.lower_share(max_share)
            return pacer

    def forget(self) -> None:
        """Forget every pacer (tests, or after changing a provider's plan)."""
        with self._lock:
            self._pacers.clear()

    def __reduce__(self) -> tuple[Any, ...]:
        # Handed to a task (a shard on the flow's task runner): in a thread of this process it is
        # the run's registry itself; in another process (a Dask worker) a new one on the same
        # Redis, so the run's pacing is still shared.
        return (_attach, (self._id, self.redis_url))


def _attach(registry_id: int, redis_url: str | None) -> Pacers:
    found = _live.get(registry_id)
    if found is not None:
        return found
    return Pacers.for_run({REDIS_URL_ENV: redis_url} if redis_url else {})


_default: Pacers | None = None
#: Whether the default registry was chosen in code (kept by a reset), or read from the environment.
_chosen = False
_default_lock = threading.Lock()


def default_pacers() -> Pacers:
    """The registry of clients made outside any run: the process's, made on first use (reading
    ``PREFECT_SESSIONS_REDIS_URL`` then)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Pacers.for_run()
        return _default


def set_pacer_factory(factory: PacerFactory | None) -> None:
    """Build the default registry's pacers with ``factory`` from now on (``None``: the
    in-process :class:`Pacer`, or a Redis-backed one when ``PREFECT_SESSIONS_REDIS_URL`` is
    set). Pacers already built are forgotten."""
    global _default, _chosen
    with _default_lock:
        _default = Pacers(factory) if factory is not None else None
        _chosen = factory is not None


def shared_pacer(
    base_url: str, fingerprint: str, rate: float | None = None, *, max_share: float = 1.0
) -> Pacer:
    """The default registry's pacer of one (base URL, credential) (see :meth:`Pacers.get`)."""
    return default_pacers().get(base_url, fingerprint, rate, max_share=max_share)


def reset_shared_pacers() -> None:
    """Forget every pacer of the default registry (tests, or after changing a provider's plan);
    a registry read from the environment is read again at its next use."""
    global _default
    with _default_lock:
        if _default is not None:
            _default.forget()
        if not _chosen:
            _default = None


def use_redis_pacing(url: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
    """Pace every client of this process made outside a run through the Redis at ``url`` (e.g.
    ``redis://127.0.0.1:6379/0``), shared with every other process that does the same."""
    global _default, _chosen
    with _default_lock:
        _default = Pacers.through_redis(url, namespace=namespace)
        _chosen = True
