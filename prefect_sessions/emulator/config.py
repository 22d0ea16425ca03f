"""How an emulator behaves: keys, rate limits, latency and faults, all fixed at start-up.

The admin routes change limits and faults while it runs; this module only parses and holds values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefect_sessions.emulator.agent import AgentScript

#: The faults the emulator can inject, in the words used by the CLI, config and request header.
FAULT_KINDS: tuple[str, ...] = ("error", "reset", "slow", "cut", "malformed")

_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class EmulatorConfigError(ValueError):
    """A configuration value the emulator cannot use; the message says which and how to fix it."""


@dataclass(frozen=True)
class RateLimit:
    """``limit`` requests per fixed window of ``window_seconds`` from a bucket's first request."""

    limit: int
    window_seconds: float

    def __post_init__(self) -> None:
        if self.limit < 1 or not self.window_seconds > 0:
            raise EmulatorConfigError(
                f"rate limit {self.limit}/{self.window_seconds}s is not usable: "
                "give at least 1 request per a positive window, e.g. '20/1s', or 'off'"
            )

    @classmethod
    def parse(cls, text: str | None) -> RateLimit | None:
        """Parse ``"20/1s"``, ``"500/60s"``, ``"10/500ms"``, ``"1/1m"`` or ``"off"`` (``None``)."""
        if text is None or text.strip().lower() in ("off", "none", ""):
            return None
        match = _LIMIT.match(text)
        if not match:
            raise EmulatorConfigError(
                f"cannot read rate limit {text!r}: write COUNT/WINDOW such as '20/1s', "
                "'500/60s', '10/500ms' or 'off'"
            )
        count, number, unit = match.groups()
        window = float(number or 1) * _UNIT_SECONDS[unit or "s"]
        return cls(int(count), window)

    def __str__(self) -> str:
        return f"{self.limit}/{self.window_seconds:g}s"


def parse_faults(text: str | Mapping[str, float] | None) -> dict[str, float]:
    """Parse fault rates: ``"error=0.05,reset=0.01"`` or a mapping; each rate is in ``[0, 1]``."""
    if text is None:
        return {}
    if isinstance(text, str):
        pairs: list[tuple[str, str | float]] = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            kind, sep, number = part.partition("=")
            if not sep:
                raise EmulatorConfigError(
                    f"cannot read fault {part!r}: write KIND=RATE, e.g. 'error=0.05,cut=0.01'"
                )
            pairs.append((kind.strip(), number.strip()))
    else:
        pairs = list(text.items())
    rates: dict[str, float] = {}
    for name, value in pairs:
        if name not in FAULT_KINDS:
            raise EmulatorConfigError(
                f"unknown fault {name!r}: choose from {', '.join(FAULT_KINDS)}"
            )
        try:
            rate = float(value)
        except ValueError:
            raise EmulatorConfigError(f"fault rate {name}={value!r} is not a number") from None
        if not 0.0 <= rate <= 1.0:
            raise EmulatorConfigError(f"fault rate {name}={rate} must lie between 0 and 1")
        rates[name] = rate
    return rates


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything an emulator needs; every field has a default that works with no setup.

    Attributes:
        api_keys: keys that are accepted; ``None`` (the default) accepts any non-empty key.
        voiceflow_limit: the runtime's fixed window per API key (the open-source default
            500 per 60 s), or ``None`` for no limit.
        liveavatar_limit: a 1-second window per caller and endpoint (numbers are unpublished).
        vectara_limit: a window per API key (numbers are unpublished).
        latency_ms, jitter_ms: added to every provider answer, jitter drawn in ``[-j, +j]``.
        faults: fault kind to probability per request, e.g. ``{"error": 0.05}``.
        seed: seeds jitter and fault draws so a run repeats exactly.
        slow_seconds: how long a ``slow`` fault holds the answer (beyond a client's timeout).
        error_status: the status a ``error`` fault answers with.
        agent: the scripted agent; ``None`` uses the built-in customer-support agent.
        sandbox_session_seconds: LiveAvatar sandbox sessions end after this long.
        idle_timeout_seconds: LiveAvatar sessions end after this long without keep-alive.
    """

    api_keys: frozenset[str] | None = None
    voiceflow_limit: RateLimit | None = field(default_factory=lambda: RateLimit(500, 60.0))
    liveavatar_limit: RateLimit | None = field(default_factory=lambda: RateLimit(20, 1.0))
    vectara_limit: RateLimit | None = field(default_factory=lambda: RateLimit(50, 1.0))
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    faults: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    slow_seconds: float = 35.0
    error_status: int = 503
    agent: AgentScript | None = None
    sandbox_session_seconds: float = 60.0
    idle_timeout_seconds: float = 300.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", parse_faults(self.faults))
        if self.api_keys is not None:
            keys = frozenset(self.api_keys)
            if not keys or "" in keys:
                raise EmulatorConfigError("api_keys must hold non-empty keys, or be None for any")
            object.__setattr__(self, "api_keys", keys)
        if self.latency_ms < 0 or self.jitter_ms < 0 or self.slow_seconds < 0:
            raise EmulatorConfigError("latency_ms, jitter_ms and slow_seconds cannot be negative")
        if not 500 <= self.error_status <= 599:
            raise EmulatorConfigError("error_status must be a 5xx status, e.g. 503")

    def with_changes(self, **changes: object) -> EmulatorConfig:
        """A copy with some fields replaced (the config itself is immutable)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_options(
        cls,
        *,
        api_keys: Iterable[str] | None = None,
        voiceflow_limit: str | None = "500/60s",
        liveavatar_limit: str | None = "20/1s",
        vectara_limit: str | None = "50/1s",
        faults: str | None = None,
        agent_file: str | Path | None = None,
        **rest: object,
    ) -> EmulatorConfig:
        """Build a config from text options as the CLI takes them."""
        agent = None
        if agent_file is not None:
            from prefect_sessions.emulator.agent import AgentScript

            agent = AgentScript.from_yaml_file(agent_file)
        return cls(
            api_keys=frozenset(api_keys) if api_keys else None,
            voiceflow_limit=RateLimit.parse(voiceflow_limit),
            liveavatar_limit=RateLimit.parse(liveavatar_limit),
            vectara_limit=RateLimit.parse(vectara_limit),
            faults=parse_faults(faults),
            agent=agent,
            **rest,  # type: ignore[arg-type]
        )
