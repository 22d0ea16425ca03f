"""The LITE-mode websocket: send the avatar audio and commands, receive its events.

Protocol (docs.liveavatar.com, LITE Mode events): JSON text frames keyed by ``type``. The server
announces ``session.state_updated`` and only accepts commands once the state is ``connected``.
Audio is base64 PCM, 16-bit, 24 kHz, mono, in chunks of about one second and at most 1 MB a
packet (larger packets may get the connection closed).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from prefect_sessions.errors import (
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    ProviderError,
    ProviderUnavailableError,
)
from prefect_sessions.liveavatar.errors import PROVIDER
from prefect_sessions.liveavatar.models import (
    LiteEvent,
    SessionStateUpdated,
    StartedSession,
    parse_lite_event,
)

SAMPLE_RATE = 24_000
BYTES_PER_SAMPLE = 2
#: About one second of audio, the chunk size LiveAvatar recommends.
DEFAULT_CHUNK_BYTES = SAMPLE_RATE * BYTES_PER_SAMPLE
#: The documented ceiling of one packet ("Max 1MB"), read as 10^6 bytes to stay on the safe side.
MAX_PACKET_BYTES = 1_000_000
# Room for the JSON around the audio: type, a generous event_id, quotes and braces.
_ENVELOPE_ALLOWANCE = 256

_OPEN_STATES = frozenset({"connecting", "connected"})


def _new_event_id() -> str:
    return uuid.uuid4().hex


def _max_chunk_bytes() -> int:
    # base64 turns every 3 bytes into 4 characters; keep whole 16-bit samples.
    largest = (MAX_PACKET_BYTES - _ENVELOPE_ALLOWANCE) // 4 * 3
    return largest - largest % BYTES_PER_SAMPLE


class LiteSocket:
    """A LITE session's websocket, used as ``async with``: it connects, then waits for the
    server's ``connected`` state before anything can be sent.

    Events that arrive are never dropped: iterate :meth:`events` (or the socket itself), or wait
    for one with :meth:`wait_for`, which leaves the others queued for later.

    Args:
        ws_url: the session's ``ws_url`` from ``start_session``; treat it as a credential.
        chunk_bytes: raw audio bytes per ``agent.speak`` packet (default: one second).
        connect_timeout: seconds to wait for the socket to open and reach ``connected``.
        connect_options: more options for ``websockets.asyncio.client.connect``.
    """

    def __init__(
        self,
        ws_url: str,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        connect_timeout: float = 30.0,
        **connect_options: Any,
    ) -> None:
        scheme = ws_url.split("://", 1)[0].lower() if "://" in ws_url else ""
        if scheme not in ("ws", "wss"):
            raise ConfigurationError(
                f"ws_url must start with wss:// or ws:// (got scheme {scheme or 'none'!r}): use "
                "the ws_url that start_session returned for a LITE session"
            )
        largest = _max_chunk_bytes()
        if not (0 < chunk_bytes <= largest and chunk_bytes % BYTES_PER_SAMPLE == 0):
            raise ConfigurationError(
                f"chunk_bytes must be an even number of bytes from 2 to {largest} (a 1 MB packet "
                f"once base64-encoded), got {chunk_bytes}; the default is one second, "
                f"{DEFAULT_CHUNK_BYTES}"
            )
        if not connect_timeout > 0:
            raise ConfigurationError("connect_timeout must be a positive number of seconds")
        self._url = ws_url
        self.chunk_bytes = chunk_bytes
        self.connect_timeout = connect_timeout
        # One deadline for opening and reaching 'connected' (ours), not two.
        self._connect_options = {"open_timeout": None, **connect_options}
        self._ws: ClientConnection | None = None
        self._pending: deque[LiteEvent] = deque()
        self.state: str | None = None

    @classmethod
    def for_session(cls, started: StartedSession | str, **options: Any) -> LiteSocket:
        """The websocket of a started LITE session (or of a ``ws_url``)."""
        url = started.ws_url if isinstance(started, StartedSession) else started
        if not url:
            raise ConfigurationError(
                "this session has no ws_url: only LITE sessions have a websocket; create the "
                "token with LiteSessionConfig"
            )
        return cls(url, **options)

    def __repr__(self) -> str:
        # The URL is left out on purpose: it usually carries an access token.
        return f"{type(self).__name__}(state={self.state!r})"

    # -- connection -----------------------------------------------------------------------------

    async def __aenter__(self) -> LiteSocket:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _error(self, operation: str, detail: str, status: int | None = None) -> ProviderError:
        error_class: type[ProviderError] = ProviderUnavailableError
        if status in (401, 403):
            error_class = AuthenticationError
        elif status == 404:
            error_class = NotFoundError
        return error_class(
            provider=PROVIDER, operation=operation, status_code=status, detail=detail
        )

    def _closed_error(self, operation: str, exc: ConnectionClosed) -> ProviderError:
        close = exc.rcvd or exc.sent
        said = f" ({close.code} {close.reason[:200]})".rstrip() if close else ""
        return self._error(operation, f"the LITE websocket closed{said}")

    async def connect(self) -> None:
        """Open the socket and wait until the session is ``connected``."""
        operation = "connect LITE websocket"
        if self._ws is not None:
            raise RuntimeError("this LITE socket is already connected; use a new LiteSocket")
        try:
            with anyio.fail_after(self.connect_timeout):
                self._ws = await connect(self._url, **self._connect_options)
                await self._await_connected(operation)
        except TimeoutError:
            await self.close()
            raise self._error(
                operation,
                f"the session did not reach state 'connected' within {self.connect_timeout:g} s",
            ) from None
        except InvalidStatus as exc:
            raise self._error(
                operation, "the server refused the websocket", exc.response.status_code
            ) from None
        except InvalidURI:
            # The exception's text holds the URL, and with it the token: say less.
            raise ConfigurationError("ws_url is not a valid websocket URL") from None
        except (OSError, WebSocketException) as exc:
            await self.close()
            raise self._error(
                operation, f"could not open the websocket ({type(exc).__name__})"
            ) from None
        except BaseException:
            await self.close()
            raise

    async def _await_connected(self, operation: str) -> None:
        ws = self._require_open()
        try:
            async for frame in ws:
                event = parse_lite_event(frame)
                self._pending.append(event)
                if isinstance(event, SessionStateUpdated):
                    self.state = event.state
                    if event.state == "connected":
                        return
                    if event.state not in _OPEN_STATES:
                        raise self._error(
                            operation,
                            f"the session went to state {event.state!r} before 'connected'",
                        )
        except ConnectionClosed as exc:
            raise self._closed_error(operation, exc) from None
        raise self._error(operation, "the websocket closed before the session was 'connected'")

    async def close(self) -> None:
        """Close the websocket (the session itself keeps running until it is stopped)."""
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    def _require_open(self) -> ClientConnection:
        if self._ws is None:
            raise RuntimeError(
                "use the LITE socket inside 'async with', e.g. 'async with session.lite() as "
                "socket:'"
            )
        return self._ws

    # -- commands -------------------------------------------------------------------------------

    async def _send(self, message: dict[str, Any]) -> None:
        ws = self._require_open()
        frame = json.dumps(message, separators=(",", ":"))
        if len(frame.encode("utf-8")) > MAX_PACKET_BYTES:
            raise ConfigurationError(
                f"a {message['type']} packet would exceed LiveAvatar's 1 MB limit: use a shorter "
                "event_id or smaller chunk_bytes"
            )
        try:
            await ws.send(frame)
        except ConnectionClosed as exc:
            raise self._closed_error(f"send {message['type']}", exc) from None

    async def speak(self, audio: bytes, *, event_id: str | None = None, end: bool = True) -> str:
        """Send audio for the avatar to speak, in packets within the size limit.

        Args:
            audio: raw PCM, 16-bit little-endian, 24 kHz, mono (no WAV header).
            event_id: groups the packets; ``agent.speak_started``/``ended`` carry it back.
            end: also send ``agent.speak_end`` (leave ``False`` to stream more audio under the
                same ``event_id`` and call :meth:`speak_end` yourself).

        Returns:
            the event ID.
        """
        if not isinstance(audio, (bytes, bytearray, memoryview)):
            raise ConfigurationError(f"audio must be bytes of PCM, got {type(audio).__name__}")
        data = bytes(audio)
        if not data or len(data) % BYTES_PER_SAMPLE:
            raise ConfigurationError(
                f"audio must be 16-bit PCM, a non-empty even number of bytes; got {len(data)}"
            )
        event_id = event_id or _new_event_id()
        for offset in range(0, len(data), self.chunk_bytes):
            chunk = base64.b64encode(data[offset : offset + self.chunk_bytes]).decode("ascii")
            await self._send({"type": "agent.speak", "audio": chunk, "event_id": event_id})
        if end:
            await self.speak_end(event_id)
        return event_id

    async def speak_end(self, event_id: str) -> None:
        """Mark the end of the speaking event ``event_id`` (``agent.speak_end``)."""
        await self._send({"type": "agent.speak_end", "event_id": event_id})

    async def interrupt(self) -> None:
        """Stop the avatar and clear every scheduled speaking event (``agent.interrupt``)."""
        await self._send({"type": "agent.interrupt"})

    async def start_listening(self, event_id: str | None = None) -> str:
        """Put the avatar in its listening pose (``agent.start_listening``); returns the ID."""
        event_id = event_id or _new_event_id()
        await self._send({"type": "agent.start_listening", "event_id": event_id})
        return event_id

    async def stop_listening(self, event_id: str | None = None) -> str:
        """Return the avatar from listening to idle (``agent.stop_listening``); returns the ID."""
        event_id = event_id or _new_event_id()
        await self._send({"type": "agent.stop_listening", "event_id": event_id})
        return event_id

    async def keep_alive(self, event_id: str | None = None) -> str:
        """Reset the 5-minute idle timeout (``session.keep_alive``); returns the ID."""
        event_id = event_id or _new_event_id()
        await self._send({"type": "session.keep_alive", "event_id": event_id})
        return event_id

    # -- events ---------------------------------------------------------------------------------

    def _seen(self, event: LiteEvent) -> LiteEvent:
        if isinstance(event, SessionStateUpdated):
            self.state = event.state
        return event

    async def _receive(self, operation: str) -> LiteEvent | None:
        ws = self._require_open()
        try:
            frame = await ws.recv()
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code in (1000, 1001):
                return None
            raise self._closed_error(operation, exc) from None
        return self._seen(parse_lite_event(frame))

    async def events(self) -> AsyncIterator[LiteEvent]:
        """Every event, in order, until the server closes the socket normally."""
        while True:
            event = self._pending.popleft() if self._pending else await self._receive("receive")
            if event is None:
                return
            yield event

    def __aiter__(self) -> AsyncIterator[LiteEvent]:
        return self.events()

    async def wait_for(
        self,
        match: str | Callable[[LiteEvent], bool],
        *,
        event_id: str | None = None,
    ) -> LiteEvent:
        """The next event of type ``match`` (or for which ``match(event)`` is true).

        Events that do not match stay queued for :meth:`events`. To bound the wait, wrap the call
        in ``anyio.fail_after(seconds)``.

        Raises:
            ProviderUnavailableError: the socket closed first.
        """

        def wanted(event: LiteEvent) -> bool:
            hit = match(event) if callable(match) else event.type == match
            return hit and (event_id is None or event.event_id == event_id)

        for index, event in enumerate(self._pending):
            if wanted(event):
                del self._pending[index]
                return event
        operation = f"wait for {match if isinstance(match, str) else 'an event'}"
        while True:
            received = await self._receive(operation)
            if received is None:
                raise self._error(operation, "the LITE websocket closed first")
            if wanted(received):
                return received
            self._pending.append(received)
