"""Pacing shared by every process that uses one API key: the schedule lives in Redis.

A :class:`~prefect_sessions.http.pacing.Pacer` spaces one process's requests. Several workers
sharing one key each learn the same limit and together send several times too much. A
:class:`RedisPacer` learns the limit the same way (from ``X-RateLimit-*``, or a configured rate),
but takes each send slot from one schedule in Redis, a GCRA-style reservation made atomically by a
Lua script on Redis's own clock:

- ``at = max(next_slot, now, hold)``; ``next_slot = at + 1 / rate``; the caller sleeps ``at - now``;
- a 429's ``Retry-After`` and a ``Remaining: 0`` window pause every process (``hold``);
- until a process has seen its first answer it sends one probe at a time, as the in-process pacer
  does; with no limit known (the server sends none), requests are not paced and Redis is not used.

A run turns it on for its clients when ``PREFECT_SESSIONS_REDIS_URL`` is set (for example in a
work pool's environment): its registry (:class:`~prefect_sessions.http.pacers.Pacers`) reads it
once, when the run starts. :func:`~prefect_sessions.http.pacers.use_redis_pacing` turns it on for
clients made outside a run. Redis is reached with the ``redis`` package (installed with Prefect).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from redis.exceptions import RedisError

from prefect_sessions.errors import ConfigurationError
from prefect_sessions.http.hints import rate_limit_info
from prefect_sessions.http.learning import RateState, next_rate_state
from prefect_sessions.http.pacing import Grant, Pacer

if TYPE_CHECKING:
    import redis

#: Environment variable naming the Redis server whose schedule every process shares.
REDIS_URL_ENV = "PREFECT_SESSIONS_REDIS_URL"

DEFAULT_NAMESPACE = "prefect-sessions:pacing"

# KEYS[1]: the next free slot, KEYS[2]: the hold; ARGV[1]: the interval; all in microseconds on
# Redis's clock. Returns how long the caller waits for its slot.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local at = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now,
                    tonumber(redis.call('GET', KEYS[2]) or '0'))
redis.call('SET', KEYS[1], string.format('%d', at + interval), 'PX',
           math.floor((at + interval - now) / 1000) + 60000)
return at - now
"""

# KEYS[1]: the hold; ARGV[1]: how long to hold from now, in microseconds.
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hold_until = now + tonumber(ARGV[1])
if hold_until > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], string.format('%d', hold_until), 'PX',
             math.floor(tonumber(ARGV[1]) / 1000) + 1000)
end
return 0
"""

# KEYS[1]: the learned rate (a hash); ARGV: ceiling, since, provisional, the refused request's
# send time. Replaces the record unless another process already lowered it after that send.
_LEARN = """
local since = tonumber(redis.call('HGET', KEYS[1], 'since') or '-1')
if since > tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], 'ceiling', ARGV[1], 'since', ARGV[2], 'provisional', ARGV[3])
redis.call('EXPIRE', KEYS[1], 3600)
return 1
"""

#: How long a process paces by its copy of the shared learned rate before reading it again.
REFRESH_SECONDS = 0.25

#: With Redis gone, every process paces on its own: each takes this share of the learned rate,
#: since the others sharing the key do the same. Redis is tried again this often.
FALLBACK_SHARE = 0.5
FALLBACK_RETRY_SECONDS = 2.0

logger = logging.getLogger("prefect_sessions.http")


def shown_url(url: str) -> str:
    """A Redis URL fit for a message: any password in it masked."""
    try:
        parts = urlsplit(url)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "(an unreadable URL)"
    return url


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class RedisPacer(Pacer):
    """A :class:`Pacer` whose send schedule and pauses are shared through Redis.

    Args:
        redis_client: a synchronous ``redis.Redis`` (thread-safe; calls run in a worker thread so
            any event loop may share this pacer). If it stops answering mid-run, this pacer
            paces in its process at :data:`FALLBACK_SHARE` of the learned rate, warns once, and
            returns to the shared schedule when Redis answers again.
        key: the schedule's name; every process pacing the same credential must use the same.
        rate: requests per second to stay under, if known; learned limits can only lower it.
        safety: share of a published limit to use.
        max_share: share of the key's limit to use (see :class:`Pacer`).
        sleep: the coroutine that waits for a slot.
        where: how messages name this Redis (its URL, password masked).
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        key: str,
        rate: float | None = None,
        *,
        safety: float = 0.95,
        max_share: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        where: str = "Redis",
    ) -> None:
        # Wall-clock seconds: a learned rate's "since" is compared across processes.
        super().__init__(rate, safety=safety, max_share=max_share, clock=time.time, sleep=sleep)
        self.key = key
        self._where = where
        # Set while Redis is unreachable: until then pace in this process only.
        self._fallback_until: float | None = None
        self._lost_at = -float("inf")
        self._redis = redis_client
        self._reserve_script = redis_client.register_script(_RESERVE)
        self._hold_script = redis_client.register_script(_HOLD)
        self._learn_script = redis_client.register_script(_LEARN)
        self._slot_key, self._hold_key = f"{key}:next", f"{key}:hold"
        self._learned_key = f"{key}:learned"
        self._shared_state: RateState | None = None
        self._read_at = -float("inf")
        self._pending: set[asyncio.Task[Any]] = set()

    def _reserve(self) -> tuple[Grant | None, float]:
        # The in-process part keeps the probe and local pauses; spacing is Redis's job, so the
        # local schedule never runs ahead of the clock.
        grant, at = super()._reserve()
        if grant is not None and not grant.probe and self._fallback_until is None:
            self._schedule.next_slot = 0.0
        return grant, at

    def _rate(self, now: float) -> float | None:
        rate = super()._rate(now)
        if rate is None or self._fallback_until is None:
            return rate
        return rate * FALLBACK_SHARE

    def _lost_redis(self, exc: BaseException) -> None:
        """Redis did not answer: pace in this process until it does (one warning per outage)."""
        with self._lock:
            first = self._fallback_until is None
            self._lost_at = self._clock()
            self._fallback_until = self._lost_at + FALLBACK_RETRY_SECONDS
            self._reschedule(self._clock())
        if first:
            logger.warning(
                "%s is unreachable (%s): pacing in this process at %d%% of the learned rate "
                "until it is back",
                self._where,
                _first_line(exc),
                round(FALLBACK_SHARE * 100),
            )

    def _found_redis(self, asked_at: float) -> None:
        with self._lock:
            # A call that left before the loss was seen may still come back: it proves nothing.
            if self._fallback_until is None or asked_at <= self._lost_at:
                return
            self._fallback_until = None
            self._reschedule(self._clock())
        logger.warning("%s answers again: pacing on the shared schedule", self._where)

    def _learned(self, now: float) -> float | None:
        state = self._shared_state
        return None if state is None else state.rate(now, probe=self._share >= 1)

    def _learn_refused(self, grant: Grant, current: float) -> None:
        if self._refused_for_concurrency(grant, current):
            return
        state, changed = next_rate_state(
            self._shared_state,
            current,
            sent_at=grant.sent_at,
            rate_at_send=grant.rate,
            measured=self._learned_rate.measured(current),
        )
        if not changed or state is None:
            return
        self._shared_state = state
        args = [repr(state.ceiling), repr(state.since), int(state.provisional), repr(grant.sent_at)]
        self._in_background(self._learn_script, keys=[self._learned_key], args=args)

    async def _wait_shared(self, grant: Grant) -> None:
        """Read the shared learned rate now and then, then wait for a slot in the schedule."""
        fallback = self._fallback_until
        if fallback is not None and self._clock() < fallback:
            return  # paced by this process's own schedule until Redis is tried again
        asked_at = self._clock()
        try:
            answered = await self._wait_in_redis(grant)
        except RedisError as exc:
            self._lost_redis(exc)
            return
        if answered:
            self._found_redis(asked_at)

    async def _wait_in_redis(self, grant: Grant) -> bool:
        """Whether Redis was asked anything (and answered)."""
        asked = False
        if not self.published and self._clock() - self._read_at >= REFRESH_SECONDS:
            asked = True
            self._read_at = self._clock()
            record = await asyncio.to_thread(self._redis.hgetall, self._learned_key)
            if record:
                fields = {k.decode() if isinstance(k, bytes) else k: v for k, v in record.items()}
                with self._lock:
                    self._shared_state = RateState(
                        ceiling=float(fields["ceiling"]),
                        since=float(fields["since"]),
                        provisional=bool(int(fields["provisional"])),
                    )
        rate = None if grant.probe else self.rate
        if rate is not None:
            asked = True
            waited = await asyncio.to_thread(
                self._reserve_script,
                keys=[self._slot_key, self._hold_key],
                args=[round(1_000_000 / rate)],
            )
            delay = int(waited) / 1_000_000
            if delay > 0:
                await self._sleep(delay)
        return asked

    def observe(
        self,
        grant: Grant,
        *,
        status: int,
        headers: Mapping[str, str],
        retry_after: float | None = None,
        retry_after_resolution: float = 0.0,
        now: datetime | None = None,
    ) -> None:
        """Learn from a response as :class:`Pacer` does, and share any pause it asks for."""
        super().observe(
            grant,
            status=status,
            headers=headers,
            retry_after=retry_after,
            retry_after_resolution=retry_after_resolution,
            now=now,
        )
        hold = 0.0
        info = rate_limit_info(headers, now or datetime.now(timezone.utc))
        if info is not None and info.remaining is not None and info.remaining <= 0:
            hold = info.reset_seconds or 0.0
        if status == 429 and retry_after is not None:
            hold = max(hold, retry_after - retry_after_resolution)
        if hold > 0:
            self._in_background(
                self._hold_script, keys=[self._hold_key], args=[round(hold * 1_000_000)]
            )

    def _in_background(self, script: Any, *, keys: list[str], args: list[Any]) -> None:
        """Run a Lua script without holding up the caller's event loop (nor failing it: a Redis
        that went away only switches pacing to this process)."""
        if self._fallback_until is not None:
            return  # shared pauses and learned rates wait for Redis to come back

        def call() -> None:
            try:
                script(keys=keys, args=args)
            except RedisError as exc:
                self._lost_redis(exc)

        try:
            task = asyncio.get_running_loop().create_task(asyncio.to_thread(call))
        except RuntimeError:  # no loop (a synchronous caller): run it right away
            call()
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def _client(url: str) -> redis.Redis:
    import redis

    with _clients_lock:
        if url not in _clients:
            # Bounded waits: a Redis that stops answering must switch pacing to this process,
            # not hang a request.
            _clients[url] = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        return _clients[url]


def check_redis(url: str) -> None:
    """Refuse to start a run whose shared pacing's Redis (``PREFECT_SESSIONS_REDIS_URL``) does
    not answer.

    Raises:
        ConfigurationError: one line naming the variable, the URL (password masked) and the fix.
    """
    try:
        _client(url).ping()
    except (RedisError, ValueError, OSError) as exc:
        raise ConfigurationError(
            f"{REDIS_URL_ENV} names Redis at {shown_url(url)}, which did not answer "
            f"({_first_line(exc)}): start it or fix the URL, or unset {REDIS_URL_ENV} to pace "
            "this run in its own process only"
        ) from None


def check_shared_pacing(environ: Mapping[str, str] | None = None) -> None:
    """:func:`check_redis` for the Redis that ``PREFECT_SESSIONS_REDIS_URL`` names, if any."""
    url = (os.environ if environ is None else environ).get(REDIS_URL_ENV)
    if url:
        check_redis(url)


def redis_pacer_factory(
    url: str, *, namespace: str = DEFAULT_NAMESPACE
) -> Callable[[str, str, float | None], Pacer]:
    """A pacer factory for a :class:`~prefect_sessions.http.pacers.Pacers` registry: one Redis
    schedule per (base URL, credential fingerprint) under ``namespace``."""

    def make(base_url: str, fingerprint: str, rate: float | None) -> Pacer:
        where = hashlib.sha256(base_url.encode("utf-8")).hexdigest()[:16]
        return RedisPacer(
            _client(url),
            f"{namespace}:{where}:{fingerprint}",
            rate,
            where=f"Redis at {shown_url(url)} ({REDIS_URL_ENV})",
        )

    return make
