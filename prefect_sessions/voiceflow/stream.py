"""A streamed Voiceflow turn (``POST .../interact/stream``): its traces as they arrive."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
from httpx_sse import EventSource, SSEError

from prefect_sessions.errors import OutcomeUnknownError
from prefect_sessions.voiceflow.models import Trace, TurnResult, parse_trace


class TraceStream:
    """The traces of one streamed turn, yielded as they arrive.

    Iterate it once. After the ``end`` event, :attr:`result` holds every trace, with completion
    pieces assembled into messages. A stream that stops before ``end`` raises
    :class:`OutcomeUnknownError`: the agent took the turn, but its answer is incomplete.
    """

    def __init__(self, response: httpx.Response, *, provider: str, operation: str) -> None:
        self._response = response
        self._provider = provider
        self._operation = operation
        self.traces: list[Trace] = []
        self.finished = False

    @property
    def result(self) -> TurnResult:
        """The traces received so far (all of them once the stream has finished)."""
        return TurnResult(traces=list(self.traces))

    def _incomplete(self, detail: str) -> OutcomeUnknownError:
        return OutcomeUnknownError(
            provider=self._provider,
            operation=self._operation,
            status_code=self._response.status_code,
            detail=f"{detail} after {len(self.traces)} traces; the agent took the turn",
        )

    async def __aiter__(self) -> AsyncIterator[Trace]:
        try:
            async for event in EventSource(self._response).aiter_sse():
                if event.event == "trace":
                    try:
                        # strict=False: the runtime may put raw control characters inside strings.
                        trace = parse_trace(json.loads(event.data, strict=False))
                    except ValueError as exc:
                        raise self._incomplete(
                            f"trace {len(self.traces) + 1} is unreadable: {exc}"
                        ) from exc
                    self.traces.append(trace)
                    yield trace
                elif event.event == "end":
                    self.finished = True
                    return
                # Other frames (legacy "state", comments, keep-alives) carry no trace.
        except SSEError as exc:
            raise self._incomplete(f"the answer was not an event stream ({exc})") from exc
        raise self._incomplete("the stream ended before its end event")
