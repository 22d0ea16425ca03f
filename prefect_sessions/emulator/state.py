"""The emulator's in-memory world: provider stores, counters, and what admin routes change."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from prefect_sessions.emulator.agent import AgentScript
from prefect_sessions.emulator.config import EmulatorConfig, EmulatorConfigError, RateLimit
from prefect_sessions.emulator.faults import FaultPlan
from prefect_sessions.emulator.providers import emulated_apis, names
from prefect_sessions.emulator.ratelimit import Limiter


def key_id(key: str) -> str:
    """A stable, non-reversible name for a credential, used in counters instead of the secret."""
    if not key:
        return "anonymous"
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass
class CounterRow:
    requests: int = 0
    rate_limited: int = 0
    faults: int = 0


class Counters:
    """Requests, 429s and injected faults per (provider, route, key); thread-safe."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str, str], CounterRow] = {}
        self._lock = threading.Lock()

    def add(self, provider: str, route: str, key: str, field_name: str) -> None:
        with self._lock:
            row = self._rows.setdefault((provider, route, key_id(key)), CounterRow())
            setattr(row, field_name, getattr(row, field_name) + 1)

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"provider": p, "route": r, "key": k, **asdict(row)}
                for (p, r, k), row in sorted(self._rows.items())
            ]

    def totals(self) -> dict[str, int]:
        with self._lock:
            rows = list(self._rows.values())
        return {
            "requests": sum(r.requests for r in rows),
            "rate_limited": sum(r.rate_limited for r in rows),
            "faults": sum(r.faults for r in rows),
        }

    def reset(self) -> None:
        with self._lock:
            self._rows.clear()


@dataclass
class Settings:
    """What admin routes may change while the emulator runs."""

    limits: dict[str, RateLimit | None]
    latency_ms: float
    jitter_ms: float
    api_keys: frozenset[str] | None
    route_limits: dict[str, RateLimit | None] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: EmulatorConfig) -> Settings:
        return cls(
            limits=_limits(config),
            latency_ms=config.latency_ms,
            jitter_ms=config.jitter_ms,
            api_keys=config.api_keys,
        )


def _limits(config: EmulatorConfig) -> dict[str, RateLimit | None]:
    """Each emulated API's vendor-shaped default limit, with the config's on top."""
    unknown = sorted(set(config.limits) - set(names()))
    if unknown:
        raise EmulatorConfigError(
            f"limits for unknown APIs {', '.join(unknown)}: use {', '.join(names())}"
        )
    limits = {api.name: RateLimit.parse(api.default_limit) for api in emulated_apis()}
    limits.update(config.limits)
    return limits


@dataclass
class EmulatorState:
    """Everything one emulator app holds; ``reset()`` brings it back to its start-up state."""

    config: EmulatorConfig
    clock: Callable[[], float] = time.time
    agent: AgentScript = field(init=False)
    settings: Settings = field(init=False)
    counters: Counters = field(init=False)
    limiter: Limiter = field(init=False)
    faults: FaultPlan = field(init=False)
    #: Each emulated API's store, by name; also reachable as an attribute (``state.voiceflow``).
    stores: dict[str, Any] = field(init=False)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.agent = self.config.agent or AgentScript.default()
        self.reset()

    def reset(self) -> None:
        """Forget every session, counter and window; restore limits and faults from the config."""
        self.settings = Settings.from_config(self.config)
        self.counters = Counters()
        self.limiter = Limiter(self.clock)
        self.faults = FaultPlan(dict(self.config.faults), seed=self.config.seed)
        self.rng = random.Random(self.config.seed)  # noqa: S311 - jitter, not security
        self.stores = {api.name: api.new_store(self.agent, self.clock) for api in emulated_apis()}

    def __getattr__(self, name: str) -> Any:
        # Only called for names not found otherwise: an emulated API's store, by its name.
        stores = self.__dict__.get("stores") or {}
        if name in stores:
            return stores[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def key_accepted(self, key: str | None) -> bool:
        """Any non-empty key, unless a key list was configured."""
        if not key:
            return False
        allowed = self.settings.api_keys
        return allowed is None or key in allowed

    def set_route_limit(self, route: str, limit: RateLimit | None) -> None:
        """Give one route (``"POST /v1/sessions/keep-alive"``) its own limit; ``None`` removes it
        (the route then counts under its provider's limit again)."""
        if limit is None:
            self.settings.route_limits.pop(route, None)
        else:
            self.settings.route_limits[route] = limit

    def limit_for(self, provider: str, route: str | None = None) -> RateLimit | None:
        """The limit of one route (``"POST /v1/sessions/keep-alive"``) if one was set for it,
        else the provider's."""
        if route is not None and route in self.settings.route_limits:
            return self.settings.route_limits[route]
        return self.settings.limits.get(provider)
