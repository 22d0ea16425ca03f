"""Baselines: the same conversations over raw httpx, retried the way people usually do it.

``RawVoiceflowAdapter`` speaks the conversation-adapter protocol, so the benchmark runs the very
same conversations through the very same runner (``run_conversations``) and only the HTTP policy
differs. It sends the same requests as ``prefect_sessions``' Voiceflow adapter (start session,
``/v4/interact`` per turn, get state for variable checks; no clean-up, as the suite's default)
with a plain ``httpx.AsyncClient`` and no pacing. Two retry policies:

- ``tenacity``: what a careful user writes with tenacity, exponential backoff with full jitter
  (``wait_random_exponential(multiplier=0.5, max=30)``), up to 10 attempts, on 429, 5xx and
  connection errors; ``Retry-After`` is ignored (tenacity has no built-in support for it).
- ``sdk``: what the generated vendor SDKs do (openai-python's ``_base_client``): 2 retries
  (3 attempts); wait ``min(0.5 * 2**n, 8) * (1 - 0.25 * U)``; ``retry-after-ms`` or
  ``Retry-After`` is used when it is more than 0 and at most 60 s, else the backoff.

A request that still fails becomes a ``prefect_sessions`` provider error, so the runner records
the conversation as errored (after the same one whole-conversation restart the engine gets).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from prefect_sessions.errors import ProviderUnavailableError, RateLimitedError
from prefect_sessions.http.pool import use_httpcore2_pool
from prefect_sessions.seam.adapter import ConversationFailure
from prefect_sessions.seam.turns import Reply, Turn
from prefect_sessions.voiceflow.models import (
    Action,
    EventAction,
    InteractRequest,
    LaunchAction,
    NoReplyAction,
    TextAction,
    TurnResult,
    parse_trace,
)

POLICIES = ("tenacity", "sdk", "none")
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})


class _Retryable(Exception):
    def __init__(self, response: httpx.Response | None, cause: Exception | None = None) -> None:
        super().__init__(f"HTTP {response.status_code}" if response is not None else str(cause))
        self.response = response


def _sdk_retry_after(response: httpx.Response | None) -> float | None:
    """openai-python's reading of the server's hint: ms first, then seconds; 0 < x <= 60 only."""
    if response is None:
        return None
    headers = response.headers
    value: float | None = None
    try:
        if "retry-after-ms" in headers:
            value = float(headers["retry-after-ms"]) / 1000.0
        elif "retry-after" in headers:
            value = float(headers["retry-after"])
    except ValueError:
        value = None
    if value is not None and 0 < value <= 60:
        return value
    return None


def _sdk_wait(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome else None
    hint = _sdk_retry_after(error.response if isinstance(error, _Retryable) else None)
    if hint is not None:
        return hint
    retries = state.attempt_number - 1  # 0 before the first retry
    return float(min(0.5 * 2.0**retries, 8.0) * (1 - 0.25 * random.random()))  # noqa: S311


def retrying(policy: str) -> AsyncRetrying:
    """The tenacity object of a baseline policy."""
    retry = retry_if_exception(lambda exc: isinstance(exc, _Retryable))
    if policy == "tenacity":
        return AsyncRetrying(
            retry=retry,
            wait=wait_random_exponential(multiplier=0.5, max=30),
            stop=stop_after_attempt(10),
            reraise=True,
        )
    if policy == "sdk":
        return AsyncRetrying(retry=retry, wait=_sdk_wait, stop=stop_after_attempt(3), reraise=True)
    if policy == "none":
        return AsyncRetrying(retry=retry, stop=stop_after_attempt(1), reraise=True)
    raise ValueError(f"unknown policy {policy!r}: one of {POLICIES}")


@dataclass
class _Handle:
    user_id: str
    session_key: str
    pending_variables: dict[str, Any] | None
    last: TurnResult | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class RawVoiceflowAdapter:
    """Voiceflow conversations over a bare ``httpx.AsyncClient`` with a baseline retry policy.

    With ``slots`` it is the oracle of a limit on requests in flight: told the limit, it never
    has more than ``slots`` requests out at once.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        project_id: str,
        policy: str,
        *,
        environment: str = "main",
        slots: int | None = None,
    ) -> None:
        self.base_url = base_url
        self.slots = slots
        self._slots: asyncio.Semaphore | None = None
        self.api_key = api_key
        self.project_id = project_id
        self.policy = policy
        self.environment = environment
        self.attempts = 0
        self.rate_limited = 0
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> RawVoiceflowAdapter:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        self._client = httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=30.0)
        if self.slots is not None:
            self._slots = asyncio.Semaphore(self.slots)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _request(
        self, method: str, path: str, *, auth: str, operation: str, **kwargs: Any
    ) -> httpx.Response:
        assert self._client is not None
        client = self._client
        headers = {"authorization": auth, **kwargs.pop("headers", {})}

        async def attempt() -> httpx.Response:
            self.attempts += 1
            try:
                if self._slots is None:
                    response = await client.request(method, path, headers=headers, **kwargs)
                else:
                    async with self._slots:
                        response = await client.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                raise _Retryable(None, exc) from exc
            if response.status_code == 429:
                self.rate_limited += 1
            if response.status_code in RETRYABLE:
                raise _Retryable(response)
            response.raise_for_status()
            return response

        try:
            response: httpx.Response = await retrying(self.policy)(attempt)
        except _Retryable as exc:
            status = exc.response.status_code if exc.response is not None else None
            error = RateLimitedError if status == 429 else ProviderUnavailableError
            raise error(
                provider="Voiceflow", operation=operation, status_code=status, detail=str(exc)
            ) from exc
        return response

    async def start(self, conversation_id: str, variables: Mapping[str, Any]) -> _Handle:
        path = f"/v4/project/{self.project_id}/environment/{self.environment}/session"
        response = await self._request(
            "POST",
            path,
            auth=self.api_key,
            operation="start session",
            json={"userID": conversation_id},
        )
        return _Handle(conversation_id, response.json()["sessionKey"], dict(variables) or None)

    def _action(self, handle: _Handle, turn: Turn) -> Action:
        if turn.kind == "launch":
            return LaunchAction(payload=turn.value or None)
        if turn.kind == "text":
            return TextAction(payload=turn.value)
        if turn.kind == "event":
            return EventAction.named(turn.value)
        if turn.kind == "no_reply":
            return NoReplyAction()
        if turn.kind == "button":
            for button in handle.last.buttons if handle.last else []:
                if button.name.casefold() == str(turn.value).casefold():
                    return button.as_action()
            raise ConversationFailure(f"no button labelled {turn.value!r} to press")
        raise ConversationFailure(f"the baseline cannot take a {turn.kind!r} turn")

    async def turn(self, handle: _Handle, turn: Turn) -> Reply:
        variables, handle.pending_variables = handle.pending_variables, None
        body = InteractRequest(action=self._action(handle, turn), variables=variables).to_wire()
        response = await self._request(
            "POST", "/v4/interact", auth=handle.session_key, operation="interact", json=body
        )
        result = TurnResult(traces=[parse_trace(item) for item in response.json()["traces"]])
        handle.last = result
        return Reply(
            messages=result.messages,
            trace_types=result.trace_types,
            buttons=[button.name for button in result.buttons],
            ended=result.ended,
        )

    def _state_path(self, handle: _Handle) -> str:
        return f"/state/user/{quote(handle.user_id, safe='')}"

    async def variables(self, handle: _Handle) -> dict[str, Any]:
        response = await self._request(
            "GET",
            self._state_path(handle),
            auth=self.api_key,
            operation="get state",
            headers={"projectID": self.project_id},
        )
        return dict((response.json() or {}).get("variables") or {})

    async def end(self, handle: _Handle) -> None:
        """Nothing to send: like the engine's adapter without the suite's ``cleanup``."""


async def bare_loop(
    base_url: str, conversations: int, concurrency: int, *, httpcore2_pool: bool = False
) -> int:
    """The smallest client that makes each conversation's requests: ``concurrency`` workers over
    one ``httpx.AsyncClient``, no retries, no checks, no results kept. Returns requests sent.
    ``httpcore2_pool``: on the pool ``prefect_sessions`` uses (to tell the engine's own cost
    apart from the pool's)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    project = "bench-project"
    sent = 0
    remaining = iter(range(conversations))
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0) as client:
        if httpcore2_pool:
            use_httpcore2_pool(client, ssl_context=httpx.create_ssl_context(), limits=limits)

        async def conversation(number: int) -> None:
            nonlocal sent
            user = f"bare-{number:06d}"
            state = {"authorization": _BARE_KEY, "projectID": project}
            path = f"/v4/project/{project}/environment/main/session"
            started = await client.post(path, json={"userID": user}, headers=state)
            session = {"authorization": started.json()["sessionKey"]}
            last: dict[str, Any] = {}
            actions: list[dict[str, Any]] = [{"type": "launch"}]
            for step in range(3):
                if step == 1:  # press the first button offered, like the suite's button turn
                    buttons = [t for t in last["traces"] if t.get("type") == "choice"]
                    actions.append(buttons[0]["payload"]["buttons"][0]["request"])
                if step == 2:
                    actions.append({"type": "text", "payload": f"My order number is {number}"})
                reply = await client.post(
                    "/v4/interact", json={"action": actions[step]}, headers=session
                )
                last = reply.json()
                if step == 1:
                    (await client.get(f"/state/user/{user}", headers=state)).json()
            sent += 5

        async def worker() -> None:
            for number in remaining:
                await conversation(number)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent


_BARE_KEY = "VF.DM.benchmark-bare-0123456789.key"
