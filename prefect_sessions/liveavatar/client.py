"""LiveAvatar's Sessions API, one method per endpoint, over the package's HTTP engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar, get_args
from uuid import UUID

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from prefect_sessions.errors import AuthenticationError, ConfigurationError
from prefect_sessions.http import HttpClient, SecretHeaderAuth
from prefect_sessions.http.paging import follow_cursor
from prefect_sessions.liveavatar.errors import PROVIDER, SUCCESS_CODE, LiveAvatarResponseError
from prefect_sessions.liveavatar.lite import LiteSocket
from prefect_sessions.liveavatar.models import (
    FullSessionConfig,
    LiteSessionConfig,
    SessionEndReason,
    SessionEntry,
    SessionListType,
    SessionPage,
    SessionToken,
    StartedSession,
    Transcript,
    TranscriptEntry,
    TranscriptPage,
    checked_end_reason,
    checked_session_id,
)
from prefect_sessions.liveavatar.session import LiveAvatarSession

M = TypeVar("M", bound=BaseModel)

_LIST_TYPES: tuple[str, ...] = get_args(SessionListType)
#: The API's largest page: fewer requests against its per-second rate limit.
MAX_PAGE_SIZE = 100


def _session_config(
    config: FullSessionConfig | LiteSessionConfig | Mapping[str, Any],
) -> FullSessionConfig | LiteSessionConfig:
    if isinstance(config, (FullSessionConfig, LiteSessionConfig)):
        return config
    if not isinstance(config, Mapping):
        raise ConfigurationError(
            "config must be a FullSessionConfig, a LiteSessionConfig or a mapping of their "
            f"fields, got {type(config).__name__}"
        )
    # FULL is the API's default mode, as in the request schema.
    model = LiteSessionConfig if config.get("mode") == "LITE" else FullSessionConfig
    return model.model_validate(dict(config))


def _bearer(session_token: SessionToken | SecretStr) -> SecretHeaderAuth:
    token = (
        session_token.session_token if isinstance(session_token, SessionToken) else session_token
    )
    if not isinstance(token, SecretStr):
        raise ConfigurationError(
            "session_token must be the SessionToken from create_session_token, or its token as a "
            "pydantic SecretStr: tokens are never passed around as plain strings"
        )
    # LiveAvatar counts lifecycle calls per session token: each session its own rate budget.
    return SecretHeaderAuth("authorization", token, scheme="Bearer", own_budget=True)


class LiveAvatarClient:
    """LiveAvatar's session lifecycle. Get one from ``LiveAvatarCredentials.get_client()``.

    Every call goes through the package's HTTP engine (pacing, retries of what is safe to retry,
    typed errors) and reads LiveAvatar's ``{code, data, message}`` envelope: anything but code
    1000 raises :class:`LiveAvatarResponseError`, even inside an HTTP 200.

    Example:
        ```python
        async with credentials.get_client() as client:
            async with client.session(LiteSessionConfig(avatar_id=avatar_id)) as session:
                async with session.lite() as socket:
                    await socket.speak(pcm_24khz_16bit)
        ```
    """

    provider = PROVIDER

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url='{self.http.base_url}')"

    async def __aenter__(self) -> LiveAvatarClient:
        await self.http.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.http.aclose()

    async def aclose(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        await self.http.aclose()

    # -- the envelope ---------------------------------------------------------------------------

    def _unwrap(
        self, response: httpx.Response, operation: str, auth: SecretHeaderAuth | None = None
    ) -> Any:
        # An answer that is not JSON means what it means for every provider: the engine decides
        # from the request's idempotency. JSON that is not a success envelope is LiveAvatar
        # saying "no" (or not saying "yes") inside a 2xx.
        payload = self.http.read_json(response, operation)
        common: dict[str, Any] = {
            "provider": PROVIDER,
            "operation": operation,
            "status_code": response.status_code,
        }
        if not isinstance(payload, dict) or "code" not in payload:
            raise LiveAvatarResponseError(
                detail="the body is not LiveAvatar's {code, data, message} envelope", **common
            )
        code = payload.get("code")
        if code != SUCCESS_CODE:
            message = payload.get("message")
            raise LiveAvatarResponseError(
                envelope_code=code if isinstance(code, int) else None,
                # Bounded and redacted like the message: the code comes from the server too.
                detail=(
                    f"the envelope's code is {self.http.redact(repr(code)[:80], auth)}, "
                    f"not {SUCCESS_CODE} (success)"
                ),
                server_message=self.http.redact(str(message)[:500], auth) if message else None,
                **common,
            )
        return payload.get("data")

    def _parse(self, model: type[M], data: Any, response: httpx.Response, operation: str) -> M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            # Name the fields only: the input may hold a token.
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'data'}: {error['msg']}"
                for error in exc.errors(include_input=False, include_url=False)[:5]
            )
            raise LiveAvatarResponseError(
                provider=PROVIDER,
                operation=operation,
                status_code=response.status_code,
                envelope_code=SUCCESS_CODE,
                detail=f"the response's data is not the documented {model.__name__} ({problems})",
            ) from None

    # -- session lifecycle ----------------------------------------------------------------------

    async def create_session_token(
        self, config: FullSessionConfig | LiteSessionConfig | Mapping[str, Any]
    ) -> SessionToken:
        """Mint a session token (``POST /v1/sessions/token``); nothing runs or costs yet.

        Args:
            config: a FULL or LITE configuration (a mapping is validated as one; ``mode``
                defaults to FULL, as in the API).
        """
        body = _session_config(config).to_body()
        operation = "create session token"
        response = await self.http.request(
            "POST", "/v1/sessions/token", operation=operation, idempotent=False, json=body
        )
        return self._parse(SessionToken, self._unwrap(response, operation), response, operation)

    async def start_session(self, session_token: SessionToken | SecretStr) -> StartedSession:
        """Start the session (``POST /v1/sessions/start``, the session token as Bearer).

        From here the session uses credits until it is stopped or times out: prefer
        :meth:`session`, which always stops it.
        """
        auth = _bearer(session_token)
        operation = "start session"
        response = await self.http.request(
            "POST", "/v1/sessions/start", operation=operation, idempotent=False, auth=auth
        )
        data = self._unwrap(response, operation, auth)
        return self._parse(StartedSession, data, response, operation)

    async def keep_alive(
        self,
        session_id: str | UUID | None = None,
        *,
        session_token: SessionToken | SecretStr | None = None,
    ) -> None:
        """Reset the session's idle timeout (``POST /v1/sessions/keep-alive``).

        With ``session_token`` (as Bearer) the call is counted against that session's own rate
        budget, as LiveAvatar counts lifecycle calls per session token; with the API key (give
        ``session_id``) every session of the key shares one per-endpoint window.
        """
        await self._lifecycle(
            "/v1/sessions/keep-alive", "keep session alive", session_id, session_token, {}
        )

    async def stop_session(
        self,
        session_id: str | UUID | None = None,
        reason: SessionEndReason = "USER_CLOSED",
        *,
        session_token: SessionToken | SecretStr | None = None,
    ) -> None:
        """Stop the session (``POST /v1/sessions/stop``) and record why; with ``session_token``
        as Bearer, as :meth:`keep_alive` explains."""
        extra = {"reason": checked_end_reason(reason)}
        await self._lifecycle("/v1/sessions/stop", "stop session", session_id, session_token, extra)

    async def close_session(self, session_token: SessionToken | SecretStr) -> None:
        """End the token's session (``DELETE /v1/sessions``, the token as Bearer): the teardown
        LiveAvatar's own demo app uses. Not in the vendor's OpenAPI; :meth:`stop_session`
        records a reason and is the documented way."""
        auth = _bearer(session_token)
        operation = "close session"
        response = await self.http.request(
            "DELETE", "/v1/sessions", operation=operation, idempotent=True, auth=auth
        )
        self._unwrap(response, operation, auth)

    async def _lifecycle(
        self,
        path: str,
        operation: str,
        session_id: str | UUID | None,
        session_token: SessionToken | SecretStr | None,
        extra: dict[str, Any],
    ) -> None:
        if session_id is None and session_token is None:
            raise ValueError(f"{operation}: give the session_id or the session_token")
        body = dict(extra)
        if session_id is not None:
            body["session_id"] = checked_session_id(session_id)
        if session_token is not None:
            auth = _bearer(session_token)
            try:
                response = await self.http.request(
                    "POST", path, operation=operation, idempotent=True, json=body, auth=auth
                )
                self._unwrap(response, operation, auth)
                return
            except AuthenticationError:
                if session_id is None:
                    raise
                # The token is gone (expired, revoked): the API key still reaches the session.
        response = await self.http.request(
            "POST", path, operation=operation, idempotent=True, json=body
        )
        self._unwrap(response, operation)

    # -- reading sessions -----------------------------------------------------------------------

    async def iter_sessions(
        self,
        type: SessionListType = "active",
        *,
        avatar_id: str | None = None,
        embed_id: str | None = None,
        context_id: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[SessionEntry]:
        """Every active (or historic) session, page after page (``GET /v1/sessions``)."""
        if type not in _LIST_TYPES:
            raise ConfigurationError(f"type must be 'active' or 'historic', got {type!r}")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigurationError(f"page_size must be 1 to {MAX_PAGE_SIZE}, got {page_size}")
        filters = {"avatar_id": avatar_id, "embed_id": embed_id, "context_id": context_id}
        params: dict[str, Any] = {
            "type": type,
            "page_size": page_size,
            **{key: value for key, value in filters.items() if value is not None},
        }
        operation = f"list {type} sessions"
        seen: set[str] = set()

        async def fetch(page_number: int | None) -> tuple[list[SessionEntry], int | None]:
            number = page_number or 1
            response = await self.http.request(
                "GET",
                "/v1/sessions",
                operation=operation,
                idempotent=True,
                params={**params, "page": number},
            )
            page = self._parse(SessionPage, self._unwrap(response, operation), response, operation)
            new = [entry for entry in page.results if entry.id not in seen]
            seen.update(entry.id for entry in new)
            # Sessions start and end while we page: trust `next` and `count`, but stop on a page
            # that brings nothing new, so a server that ignores `page` cannot loop us forever.
            more = bool(new) and bool(page.next or len(seen) < page.count)
            return new, number + 1 if more else None

        async for entry in follow_cursor(fetch, provider=PROVIDER, operation=operation):
            yield entry

    async def list_sessions(
        self,
        type: SessionListType = "active",
        *,
        avatar_id: str | None = None,
        embed_id: str | None = None,
        context_id: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> list[SessionEntry]:
        """Every active (or historic) session, all pages collected."""
        return [
            entry
            async for entry in self.iter_sessions(
                type,
                avatar_id=avatar_id,
                embed_id=embed_id,
                context_id=context_id,
                page_size=page_size,
            )
        ]

    async def get_session(self, session_id: str | UUID) -> SessionEntry:
        """One session (``GET /v1/sessions/{session_id}``); ended ones carry their end reason."""
        operation = "get session"
        path = f"/v1/sessions/{checked_session_id(session_id)}"
        response = await self.http.request("GET", path, operation=operation, idempotent=True)
        return self._parse(SessionEntry, self._unwrap(response, operation), response, operation)

    async def get_transcript_page(
        self,
        session_id: str | UUID,
        *,
        start_timestamp: int | None = None,
        end_timestamp: int | None = None,
    ) -> TranscriptPage:
        """One page of the transcript (``GET /v1/sessions/{session_id}/transcript``)."""
        operation = "get transcript"
        path = f"/v1/sessions/{checked_session_id(session_id)}/transcript"
        bounds = {"start_timestamp": start_timestamp, "end_timestamp": end_timestamp}
        params = {key: value for key, value in bounds.items() if value is not None}
        response = await self.http.request(
            "GET", path, operation=operation, idempotent=True, params=params
        )
        data = self._unwrap(response, operation)
        return self._parse(TranscriptPage, data, response, operation)

    async def get_transcript(
        self,
        session_id: str | UUID,
        *,
        start_timestamp: int | None = None,
        end_timestamp: int | None = None,
    ) -> Transcript:
        """The whole transcript from ``start_timestamp``, following ``next_timestamp``.

        Stops when the server gives no ``next_timestamp``, a page is empty, the cursor does not
        move forward, or it passes ``end_timestamp``. For an active session, call again later
        with ``start_timestamp=transcript.next_timestamp`` for what was said since.
        """
        session = checked_session_id(session_id)
        entries: list[TranscriptEntry] = []
        seen: set[tuple[str, str, int]] = set()
        cursor = start_timestamp
        pages = 0
        while True:
            page = await self.get_transcript_page(
                session, start_timestamp=cursor, end_timestamp=end_timestamp
            )
            pages += 1
            for entry in page.transcript_data:
                # Whether a page's start is inclusive is not documented: drop exact repeats.
                key = (entry.role, entry.transcript, entry.absolute_timestamp)
                if key not in seen:
                    seen.add(key)
                    entries.append(entry)
            following = page.next_timestamp
            done = (
                following is None
                or not page.transcript_data
                or (cursor is not None and following <= cursor)
                or (end_timestamp is not None and following > end_timestamp)
            )
            if done:
                return Transcript(
                    session_id=session,
                    session_active=page.session_active,
                    entries=entries,
                    next_timestamp=following,
                    pages=pages,
                )
            cursor = following

    async def delete_session_events(self, session_id: str | UUID) -> None:
        """Hard-delete a session's stored events (``DELETE /v1/sessions/{session_id}/events``)."""
        operation = "delete session events"
        path = f"/v1/sessions/{checked_session_id(session_id)}/events"
        response = await self.http.request("DELETE", path, operation=operation, idempotent=True)
        self._unwrap(response, operation)

    # -- helpers --------------------------------------------------------------------------------

    def session(
        self,
        config: FullSessionConfig | LiteSessionConfig | Mapping[str, Any],
        **options: Any,
    ) -> LiveAvatarSession:
        """A session that is always stopped: ``async with client.session(config) as session``.

        See :class:`~prefect_sessions.liveavatar.session.LiveAvatarSession` for the options.
        """
        return LiveAvatarSession(self, config, **options)

    @staticmethod
    def lite(started: StartedSession | str, **options: Any) -> LiteSocket:
        """The LITE websocket of a started session, for ``async with``."""
        return LiteSocket.for_session(started, **options)
