"""Faults on demand: which request gets one (seeded, so runs repeat) and how each is produced.

Kinds (see ``config.FAULT_KINDS``):
- ``error``: a 5xx answer in the provider's envelope.
- ``reset``: the connection is reset before any byte of the answer (TCP RST on a real socket).
- ``slow``: the answer is held ``slow_seconds`` (beyond a client's read timeout), or until the
  client hangs up.
- ``cut``: the answer starts, then the connection drops before its end (an SSE stream loses its
  final frame; a JSON body loses its second half).
- ``malformed``: a complete answer whose JSON does not parse.

A request gets a fault from, in order: its ``X-Emulator-Fault`` header (a kind, or ``none``), the
faults queued through the admin API, then the configured rates.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from prefect_sessions.emulator.config import FAULT_KINDS, EmulatorConfigError, parse_faults

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

FAULT_HEADER = "x-emulator-fault"
#: A request header that sets this request's added latency in milliseconds (no jitter).
LATENCY_HEADER = "x-emulator-latency-ms"
#: The ASGI scope extension the emulator's own server adds: ``abort(reset: bool)`` drops the
#: connection, with a TCP reset or after flushing what was sent.
ABORT_EXTENSION = "prefect_sessions.emulator.abort"


@dataclass
class QueuedFault:
    kind: str
    route: str | None  # a path prefix, e.g. "/v4/interact"; None for any provider route
    remaining: int


class FaultPlan:
    """Decides which request gets which fault; thread-safe, seeded."""

    def __init__(self, rates: dict[str, float], seed: int = 0) -> None:
        self.rates = parse_faults(rates)
        self.seed = seed
        self._random = random.Random(seed)  # noqa: S311 - reproducible test faults, not security
        self._queue: list[QueuedFault] = []
        self._lock = threading.Lock()

    def set_rates(self, rates: dict[str, float], seed: int | None = None) -> None:
        parsed = parse_faults(rates)
        with self._lock:
            self.rates = parsed
            if seed is not None:
                self.seed = seed
                self._random = random.Random(seed)  # noqa: S311

    def enqueue(self, kind: str, *, count: int = 1, route: str | None = None) -> None:
        if kind not in FAULT_KINDS:
            raise EmulatorConfigError(
                f"unknown fault {kind!r}: choose from {', '.join(FAULT_KINDS)}"
            )
        if count < 1:
            raise EmulatorConfigError("count must be at least 1")
        with self._lock:
            self._queue.append(QueuedFault(kind, route, count))

    def queued(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"kind": q.kind, "route": q.route, "remaining": q.remaining} for q in self._queue
            ]

    def decide(self, path: str, header: str | None) -> str | None:
        """The fault for this request, or ``None``.

        Raises:
            EmulatorConfigError: the header names an unknown fault.
        """
        if header is not None:
            value = header.strip().lower()
            if value in ("", "none"):
                return None
            if value not in FAULT_KINDS:
                raise EmulatorConfigError(
                    f"{FAULT_HEADER}: unknown fault {value!r}; choose from "
                    f"{', '.join(FAULT_KINDS)} or 'none'"
                )
            return value
        with self._lock:
            for queued in self._queue:
                if queued.route is None or path.startswith(queued.route):
                    queued.remaining -= 1
                    if queued.remaining <= 0:
                        self._queue.remove(queued)
                    return queued.kind
            # One draw per request and kind keeps the sequence stable when rates change.
            draws = {kind: self._random.random() for kind in FAULT_KINDS}
            for kind in FAULT_KINDS:
                if draws[kind] < self.rates.get(kind, 0.0):
                    return kind
        return None


# -- producing faults on the wire ---------------------------------------------------------------


async def drop_connection(scope: Scope, *, after_bytes: bool) -> None:
    """Reset the connection; in process (no socket) raise an httpx transport error instead.

    ``after_bytes`` says whether part of the answer was already sent (an incomplete body) or not
    (a reset before any answer); in process that picks the error a real client would see.
    """
    abort = scope.get("extensions", {}).get(ABORT_EXTENSION)
    if abort is not None:
        abort(not after_bytes)
        # Let the server see the connection go, so it neither logs nor answers for us.
        for _ in range(3):
            await asyncio.sleep(0)
        return
    import httpx

    if after_bytes:
        raise httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body (emulator fault: cut)"
        )
    raise httpx.ReadError("connection reset by peer (emulator fault: reset)")


async def wait_or_disconnect(seconds: float, receive: Receive) -> bool:
    """Sleep ``seconds`` unless the client hangs up first; ``True`` when it hung up."""

    async def hang_up() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
    watcher = asyncio.ensure_future(hang_up())
    done, pending = await asyncio.wait({sleeper, watcher}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return watcher in done


class CutSend:
    """Forwards an answer but drops the connection before its end.

    Every body chunk but the last is forwarded (an SSE stream loses its final ``end`` frame); an
    answer in one chunk keeps only its first half.
    """

    def __init__(self, scope: Scope, send: Send) -> None:
        self._scope = scope
        self._send = send
        self._held: bytes | None = None
        self._forwarded = False

    async def __call__(self, message: Message) -> None:
        if message["type"] != "http.response.body":
            await self._send(message)
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if body:
            if self._held is not None:
                await self._send(
                    {"type": "http.response.body", "body": self._held, "more_body": True}
                )
                self._forwarded = True
            self._held = body
        if more:
            return
        if not self._forwarded and self._held:
            half = self._held[: max(1, len(self._held) // 2)]
            await self._send({"type": "http.response.body", "body": half, "more_body": True})
        await drop_connection(self._scope, after_bytes=True)


class MalformedSend:
    """Forwards a complete answer whose JSON is broken (one closing brace removed)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._start: Message | None = None
        self._chunks: list[bytes] = []
        self._streaming = False
        self._done = False

    @staticmethod
    def _break(data: bytes) -> bytes:
        index = data.rfind(b"}")
        return data[:index] + data[index + 1 :] if index >= 0 else data + b"{"

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            names = {name for name, _ in message.get("headers", [])}
            self._streaming = b"content-length" not in names
            if self._streaming:
                await self._send(message)
            else:
                self._start = message
            return
        if message["type"] != "http.response.body":
            await self._send(message)
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if self._streaming:
            # Break the first data frame of a stream; later frames stay intact.
            if body and not self._done and b"data:" in body:
                body, self._done = self._break(body), True
            await self._send({"type": "http.response.body", "body": body, "more_body": more})
            return
        self._chunks.append(body)
        if more:
            return
        whole = b"".join(self._chunks)
        broken = self._break(whole) if whole else whole
        assert self._start is not None
        headers = [
            (name, str(len(broken)).encode() if name == b"content-length" else value)
            for name, value in self._start.get("headers", [])
        ]
        await self._send({**self._start, "headers": headers})
        await self._send({"type": "http.response.body", "body": broken, "more_body": False})
