"""What a server says about when to come back: ``Retry-After`` and the rate-limit headers.

Every parser here is pure and total: malformed, negative, non-finite or implausibly large values are
ignored (``None``) rather than trusted, so the caller falls back to its own backoff.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from prefect_sessions.errors import RetryHint

# A hint longer than a day is treated as garbage, not as an instruction: no provider we speak to
# publishes windows that long, and trusting it would park a batch forever.
MAX_CREDIBLE_HINT_SECONDS = 86_400.0

# X-RateLimit-Reset values above this are epoch timestamps (GitHub style), not delta-seconds.
_EPOCH_THRESHOLD = 1_000_000_000.0

# HTTP's optional whitespace is space and tab only, and digits are ASCII: "0\x1f" or "٣" are not
# numbers here (hypothesis found float() refusing what a \s or \d pattern let through).
_NUMBER = re.compile(r"^[ \t]*([0-9]+(?:\.[0-9]+)?)[ \t]*$")
_INTEGER = re.compile(r"^[ \t]*[0-9]+[ \t]*$")


@dataclass(frozen=True)
class RateLimitInfo:
    """The ``X-RateLimit-*`` (or draft ``RateLimit-*``) headers of one response."""

    limit: int | None
    remaining: int | None
    reset_seconds: float | None


def _credible(seconds: float) -> bool:
    return math.isfinite(seconds) and 0.0 <= seconds <= MAX_CREDIBLE_HINT_SECONDS


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def parse_retry_after_ms(value: str | None) -> RetryHint | None:
    """Parse ``retry-after-ms`` (OpenAI-style, milliseconds, integer or fractional)."""
    match = _NUMBER.match(value) if value is not None else None
    if match is None:
        return None
    seconds = float(match.group(1)) / 1000.0
    return RetryHint(seconds, 0.001, "retry-after-ms") if _credible(seconds) else None


def parse_retry_after(value: str | None, now: datetime) -> RetryHint | None:
    """Parse ``Retry-After`` as delta-seconds (``0``, ``2``, ``1.5``) or an HTTP-date.

    An HTTP-date in the past gives 0: the server has already allowed the retry.
    """
    if value is None:
        return None
    if match := _NUMBER.match(value):
        seconds = float(match.group(1))
        resolution = 1.0 if _INTEGER.match(value) else 0.0
        return RetryHint(seconds, resolution, "Retry-After") if _credible(seconds) else None
    try:
        moment = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    seconds = max(0.0, (_as_utc(moment) - now).total_seconds())
    return RetryHint(seconds, 1.0, "Retry-After") if _credible(seconds) else None


def parse_reset(value: str | None, now: datetime) -> RetryHint | None:
    """Parse ``X-RateLimit-Reset``: an ISO-8601 time (Voiceflow), delta-seconds (LiveAvatar) or,
    for values that can only be one, a Unix epoch timestamp."""
    if value is None:
        return None
    text = value.strip(" \t")
    if match := _NUMBER.match(text):
        number = float(match.group(1))
        is_epoch = number >= _EPOCH_THRESHOLD
        seconds = max(0.0, number - now.timestamp()) if is_epoch else number
        resolution = 1.0 if _INTEGER.match(text) else 0.0
        return RetryHint(seconds, resolution, "X-RateLimit-Reset") if _credible(seconds) else None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    seconds = max(0.0, (_as_utc(moment) - now).total_seconds())
    return RetryHint(seconds, 0.0, "X-RateLimit-Reset") if _credible(seconds) else None


def _header(headers: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            return value
    return None


def retry_hint(headers: Mapping[str, str], now: datetime) -> RetryHint | None:
    """The server's hint for a retry, from every header that gives one.

    ``headers`` must look names up case-insensitively (``httpx.Headers`` does). When several
    headers are present the longest wait wins, so the retry comes after every one of them allows
    it (Voiceflow floors ``Retry-After`` to whole seconds while ``X-RateLimit-Reset`` is exact).
    """
    hints = [
        parse_retry_after_ms(headers.get("retry-after-ms")),
        parse_retry_after(headers.get("retry-after"), now),
        parse_reset(_header(headers, "x-ratelimit-reset", "ratelimit-reset"), now),
    ]
    found = [hint for hint in hints if hint is not None]
    if not found:
        return None
    return max(found, key=lambda hint: hint.seconds)


def _leading_int(value: str | None) -> int | None:
    # Draft IETF values may carry parameters ("100, 100;w=60"): the first number is the quota.
    if value is None:
        return None
    match = re.match(r"^\s*(\d{1,12})", value)
    return int(match.group(1)) if match else None


def rate_limit_info(headers: Mapping[str, str], now: datetime) -> RateLimitInfo | None:
    """The published quota of a response, or ``None`` when the server publishes none."""
    limit = _leading_int(_header(headers, "x-ratelimit-limit", "ratelimit-limit"))
    remaining = _leading_int(_header(headers, "x-ratelimit-remaining", "ratelimit-remaining"))
    reset = parse_reset(_header(headers, "x-ratelimit-reset", "ratelimit-reset"), now)
    if limit is None and remaining is None and reset is None:
        return None
    return RateLimitInfo(limit, remaining, reset.seconds if reset else None)


#: Go's duration units (``time.ParseDuration``), as OpenAI writes its resets: ``6m0s``, ``12ms``.
_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(value: str | None) -> float | None:
    """Seconds of a reset written as a Go duration (``1s``, ``6m0s``, ``12ms``, ``1h2m3.5s``)
    or as plain seconds (``2``, ``0.5``); ``None`` for anything else."""
    if value is None:
        return None
    text = value.strip(" \t")
    if match := _NUMBER.match(text):
        seconds = float(match.group(1))
        return seconds if _credible(seconds) else None
    position, seconds = 0, 0.0
    while position < len(text):
        part = _GO_PART.match(text, position)
        if part is None:
            return None
        seconds += float(part.group(1)) * _GO_UNITS[part.group(2)]
        position = part.end()
    return seconds if text and _credible(seconds) else None


def _count(value: str | None) -> int | None:
    # Azure OpenAI has been seen sending -1 and 0 for a limit it does not apply: not a quota.
    number = _leading_int(value)
    return number if number is not None and number > 0 else None


def quota_info(headers: Mapping[str, str], unit: str) -> RateLimitInfo | None:
    """One of several published quotas, OpenAI's way: ``x-ratelimit-limit-<unit>``,
    ``-remaining-<unit>`` and ``-reset-<unit>`` (a Go duration: the time until the quota is
    whole again). ``unit`` is ``requests`` or ``tokens``. A limit of ``-1`` or ``0`` (Azure)
    publishes nothing; a remaining count below 0 is not believed."""
    limit = _count(headers.get(f"x-ratelimit-limit-{unit}"))
    if limit is None:
        return None
    remaining = _leading_int(headers.get(f"x-ratelimit-remaining-{unit}"))
    reset = parse_duration(headers.get(f"x-ratelimit-reset-{unit}"))
    return RateLimitInfo(limit, None if remaining is None else min(remaining, limit), reset)


def should_retry_header(headers: Mapping[str, str]) -> bool | None:
    """The server's explicit verdict in ``x-should-retry``, when it gives one."""
    value = headers.get("x-should-retry")
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return None
