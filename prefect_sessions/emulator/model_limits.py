"""A model endpoint's two budgets, limited the way OpenAI limits them: requests and tokens.

OpenAI counts requests per minute and tokens per minute, each a bucket refilled continuously,
and publishes both on every answer (platform.openai.com/docs/guides/rate-limits, "rate limits in
headers"): ``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests``,
``x-ratelimit-reset-requests`` (the time until the bucket is full again, as a Go duration such as
``6m0s`` or ``12ms``) and the same three for ``-tokens``. A request costs one request and the
tokens of its prompt plus the completion it may take (``max_tokens``); either bucket refuses it
with a 429 whose message says which one, as OpenAI's does. No ``Retry-After`` is sent: the
reset headers are all a client gets.

The emulator counts a prompt's tokens its own way (words, not the client's characters), so a
client that paces on its own estimate is corrected only by the ``remaining`` it is sent back.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from prefect_sessions.emulator.config import ModelLimit


def go_duration(seconds: float) -> str:
    """Seconds as Go's ``time.Duration`` prints them, to the millisecond: ``12ms``, ``1.5s``,
    ``6m0s``, ``1h0m0s``."""
    millis = max(0, math.ceil(seconds * 1000 - 1e-6))
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    text = f"{whole}.{fraction:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def prompt_tokens(texts: list[str]) -> int:
    """The emulator's count of a prompt: four tokens for every three words, and four per
    message (its role and framing)."""
    return sum(4 + math.ceil(len(text.split()) * 4 / 3) for text in texts)


@dataclass(frozen=True)
class ModelDecision:
    """One request against both buckets: allowed or not, which refused, and the headers."""

    allowed: bool
    refused_by: str | None
    headers: dict[str, str]
    message: str = ""


class ModelLimiter:
    """Both buckets per caller; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._buckets: dict[tuple[Hashable, str], tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _level(self, key: Hashable, unit: str, size: int, window: float, now: float) -> float:
        level, at = self._buckets.get((key, unit), (float(size), now))
        return min(float(size), level + (now - at) * size / window)

    def take(self, key: Hashable, limit: ModelLimit, tokens: int, model: str) -> ModelDecision:
        """Count one request costing ``tokens`` against ``key``'s buckets."""
        with self._lock:
            now = self._clock()
            sizes = {"requests": limit.requests, "tokens": limit.tokens}
            levels = {
                unit: self._level(key, unit, size, limit.window_seconds, now)
                for unit, size in sizes.items()
            }
            costs = {"requests": 1.0, "tokens": float(tokens)}
            refused_by = next((u for u in ("requests", "tokens") if levels[u] < costs[u]), None)
            if refused_by is None:
                for unit in levels:
                    levels[unit] -= costs[unit]
            for unit, level in levels.items():
                self._buckets[(key, unit)] = (level, now)
            headers: dict[str, str] = {}
            for unit, size in sizes.items():
                refill = size / limit.window_seconds
                headers[f"x-ratelimit-limit-{unit}"] = str(size)
                headers[f"x-ratelimit-remaining-{unit}"] = str(max(0, math.floor(levels[unit])))
                headers[f"x-ratelimit-reset-{unit}"] = go_duration((size - levels[unit]) / refill)
            message = ""
            if refused_by is not None:
                short = {"requests": "requests per min (RPM)", "tokens": "tokens per min (TPM)"}
                wait = (costs[refused_by] - levels[refused_by]) * limit.window_seconds
                wait /= sizes[refused_by]
                used = sizes[refused_by] - math.floor(levels[refused_by])
                message = (
                    f"Rate limit reached for {model} on {short[refused_by]}: Limit "
                    f"{sizes[refused_by]}, Used {used}, Requested "
                    f"{math.ceil(costs[refused_by])}. Please try again in {go_duration(wait)}."
                )
            return ModelDecision(refused_by is None, refused_by, headers, message)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()


__all__ = ["ModelDecision", "ModelLimit", "ModelLimiter", "go_duration", "prompt_tokens"]
