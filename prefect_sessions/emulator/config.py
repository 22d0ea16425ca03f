"""How an emulator behaves: keys, rate limits, latency and faults, all fixed at start-up.

The admin routes change limits and faults while it runs; this module only parses and holds values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect_sessions.emulator.agent import AgentScript

#: The faults the emulator can inject, in the words used by the CLI, config and request header.
FAULT_KINDS: tuple[str, ...] = ("error", "reset", "slow", "cut", "malformed")

_WINDOW = re.compile(r"^(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m|h)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

#: How a limit counts: a fixed window from a bucket's first request, a sliding window (a log of
#: the last window's accepted requests), a token bucket refilled at COUNT per WINDOW, or requests
#: in flight at once.
COUNTINGS: tuple[str, ...] = ("fixed", "sliding", "bucket", "inflight")
#: What a limited answer tells the client: ``X-RateLimit-*`` on every answer plus ``Retry-After``
#: on a 429; ``Retry-After`` (and LiveAvatar's ``X-RateLimit-Reset`` seconds) on a 429 only; or a
#: bare 429.
PUBLISHES: tuple[str, ...] = ("headers", "retry-after", "none")
#: What one bucket counts: the caller's credential, or the credential and the endpoint.
SCOPES: tuple[str, ...] = ("key", "endpoint")

_LIMIT_HELP = (
    "write COUNT/WINDOW or inflight=N, then any of fixed|sliding|bucket, burst=N, "
    "publish=headers|retry-after|none, scope=key|endpoint; e.g. '20/1s', "
    "'20/1s bucket burst=5 publish=none', 'inflight=4 publish=none', or 'off'"
)


class EmulatorConfigError(ValueError):
    """A configuration value the emulator cannot use; the message says which and how to fix it."""


@dataclass(frozen=True)
class RateLimit:
    """A provider's limit, in the shapes real providers have.

    Attributes:
        limit: requests per window, or requests in flight at once (``counting="inflight"``).
        window_seconds: the window (unused for ``inflight``).
        counting: one of :data:`COUNTINGS`.
        publish: one of :data:`PUBLISHES`; ``None`` takes the provider's documented default.
        scope: one of :data:`SCOPES`; ``None`` takes the provider's documented default.
        burst: a token bucket's capacity (default: ``limit``).
    """

    limit: int
    window_seconds: float = 1.0
    counting: str = "fixed"
    publish: str | None = None
    scope: str | None = None
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.limit < 1 or not self.window_seconds > 0:
            raise EmulatorConfigError(
                f"rate limit {self.limit}/{self.window_seconds}s is not usable: "
                "give at least 1 request per a positive window, e.g. '20/1s', or 'off'"
            )
        for name, value, allowed in (
            ("counting", self.counting, COUNTINGS),
            ("publish", self.publish, (*PUBLISHES, None)),
            ("scope", self.scope, (*SCOPES, None)),
        ):
            if value not in allowed:
                choices = "|".join(a for a in allowed if a)
                raise EmulatorConfigError(f"limit {name} {value!r} is unknown: choose {choices}")
        if self.burst is not None and (self.burst < 1 or self.counting != "bucket"):
            raise EmulatorConfigError("burst=N (N >= 1) belongs to a token bucket: add 'bucket'")

    @property
    def capacity(self) -> int:
        """A token bucket's size."""
        return self.burst or self.limit

    @classmethod
    def parse(cls, text: str | None) -> RateLimit | None:
        """Parse ``"20/1s"``, ``"500/60s"``, ``"10/500ms"``, ``"20/1s bucket burst=5
        publish=none"``, ``"inflight=4"``, ... or ``"off"`` (``None``); see :data:`COUNTINGS`."""
        if text is None or text.strip().lower() in ("off", "none", ""):
            return None
        fields: dict[str, Any] = {}
        for word in filter(None, re.split(r"[\s,]+", text.strip().lower())):
            name, sep, value = word.partition("=")
            window = _WINDOW.match(word)
            if window:
                count, number, unit = window.groups()
                fields["limit"] = int(count)
                fields["window_seconds"] = float(number or 1) * _UNIT_SECONDS[unit or "s"]
            elif not sep and word in COUNTINGS and word != "inflight":
                fields["counting"] = word
            elif sep and name in ("inflight", "burst") and value.isdigit():
                if name == "inflight":
                    fields["limit"], fields["counting"] = int(value), "inflight"
                else:
                    fields["burst"] = int(value)
            elif sep and name in ("publish", "scope"):
                fields[name] = value
            else:
                raise EmulatorConfigError(f"cannot read rate limit {text!r}: {_LIMIT_HELP}")
        if "limit" not in fields:
            raise EmulatorConfigError(f"rate limit {text!r} has no count: {_LIMIT_HELP}")
        return cls(**fields)

    def __str__(self) -> str:
        if self.counting == "inflight":
            parts = [f"inflight={self.limit}"]
        else:
            parts = [f"{self.limit}/{self.window_seconds:g}s"]
            if self.counting != "fixed":
                parts.append(self.counting)
            if self.burst is not None:
                parts.append(f"burst={self.burst}")
        if self.publish is not None:
            parts.append(f"publish={self.publish}")
        if self.scope is not None:
            parts.append(f"scope={self.scope}")
        return " ".join(parts)


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


_MODEL_LIMIT = re.compile(
    r"^\s*(?P<requests>\d+)\s*/\s*(?P<window>\d+(?:\.\d+)?)?\s*(?P<unit>ms|s|m|h)?"
    r"(?:\s+tokens\s*=\s*(?P<tokens>\d+))?\s*$"
)
_MODEL_HELP = "write REQUESTS/WINDOW tokens=TOKENS, e.g. '500/60s tokens=200000', or 'off'"


@dataclass(frozen=True)
class ModelLimit:
    """A model endpoint's requests and tokens per window, each a bucket of that size refilled
    continuously over the window, as OpenAI limits them (:mod:`.model_limits`)."""

    requests: int
    tokens: int
    window_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.requests < 1 or self.tokens < 1 or not self.window_seconds > 0:
            raise EmulatorConfigError(f"model limit {self} is not usable: {_MODEL_HELP}")

    @classmethod
    def parse(cls, text: str | None) -> ModelLimit | None:
        """``"500/60s tokens=200000"`` (tokens default to 400 per request), or ``"off"``."""
        if text is None or text.strip().lower() in ("off", "none", ""):
            return None
        match = _MODEL_LIMIT.match(text.lower())
        if match is None:
            raise EmulatorConfigError(f"cannot read model limit {text!r}: {_MODEL_HELP}")
        requests = int(match["requests"])
        window = float(match["window"] or 1) * _UNIT_SECONDS[match["unit"] or "s"]
        tokens = int(match["tokens"]) if match["tokens"] else 400 * requests
        return cls(requests, tokens, window)

    def __str__(self) -> str:
        return f"{self.requests}/{self.window_seconds:g}s tokens={self.tokens}"


#: OpenAI's tier-1 shape for a small model, scaled to a test: 500 requests and 200,000 tokens a
#: minute.
DEFAULT_MODEL_LIMIT = ModelLimit(500, 200_000, 60.0)


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything an emulator needs; every field has a default that works with no setup.

    Attributes:
        api_keys: keys that are accepted; ``None`` (the default) accepts any non-empty key.
        limits: a limit per emulated API by name (``{"voiceflow": RateLimit(20, 1.0)}``), or
            ``None`` for no limit; an API not named keeps its vendor-shaped default (see
            :mod:`prefect_sessions.emulator.providers`: Voiceflow 500 per 60 s with
            ``X-RateLimit-*``; LiveAvatar 20 per second per caller and endpoint, ``Retry-After``
            on a 429; Vectara a bare 429 past 5 requests in flight).
        latency_ms, jitter_ms: added to every provider answer, jitter drawn in ``[-j, +j]``.
        faults: fault kind to probability per request, e.g. ``{"error": 0.05}``.
        seed: seeds jitter and fault draws so a run repeats exactly.
        slow_seconds: how long a ``slow`` fault holds the answer (beyond a client's timeout).
        error_status: the status a ``error`` fault answers with.
        agent: the scripted agent; ``None`` uses the built-in customer-support agent.
        sandbox_session_seconds: LiveAvatar sessions end after this long.
        idle_timeout_seconds: LiveAvatar sessions end after this long without keep-alive.
        vectara_think_ms: how long the scripted Vectara agent thinks before it answers. Its
            session is ``running`` from the moment an input arrives (before the latency) until
            the answer is complete, as a real agent's is while its model answers, so a second
            input sent meanwhile gets Vectara's 409. The default, 250 ms, is about the least a
            hosted model takes to start an answer (a real agent's turn takes seconds): enough
            that two inputs sent together meet a running session, short enough for suites.
        model_limit: the emulated model endpoint's requests and tokens per window, published
            as OpenAI publishes them; ``None``: unlimited.
    """

    api_keys: frozenset[str] | None = None
    limits: Mapping[str, RateLimit | None] = field(default_factory=dict)
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    faults: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    slow_seconds: float = 35.0
    error_status: int = 503
    agent: AgentScript | None = None
    sandbox_session_seconds: float = 60.0
    idle_timeout_seconds: float = 300.0
    vectara_think_ms: float = 250.0
    model_limit: ModelLimit | None = DEFAULT_MODEL_LIMIT

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", parse_faults(self.faults))
        object.__setattr__(self, "limits", dict(self.limits))
        if self.api_keys is not None:
            keys = frozenset(self.api_keys)
            if not keys or "" in keys:
                raise EmulatorConfigError("api_keys must hold non-empty keys, or be None for any")
            object.__setattr__(self, "api_keys", keys)
        if min(self.latency_ms, self.jitter_ms, self.slow_seconds, self.vectara_think_ms) < 0:
            raise EmulatorConfigError(
                "latency_ms, jitter_ms, slow_seconds and vectara_think_ms cannot be negative"
            )
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
        limits: Mapping[str, str | None] | None = None,
        faults: str | None = None,
        agent_file: str | Path | None = None,
        model_limit: str | None = str(DEFAULT_MODEL_LIMIT),
        **rest: object,
    ) -> EmulatorConfig:
        """Build a config from text options as the CLI takes them (``limits``: text per API,
        e.g. ``{"voiceflow": "20/1s"}``; ``model_limit``: ``"500/60s tokens=200000"``)."""
        agent = None
        if agent_file is not None:
            from prefect_sessions.emulator.agent import AgentScript

            agent = AgentScript.from_yaml_file(agent_file)
        return cls(
            api_keys=frozenset(api_keys) if api_keys else None,
            limits={name: RateLimit.parse(text) for name, text in (limits or {}).items()},
            faults=parse_faults(faults),
            agent=agent,
            model_limit=ModelLimit.parse(model_limit),
            **rest,  # type: ignore[arg-type]
        )
