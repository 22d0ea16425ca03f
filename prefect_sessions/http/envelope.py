"""How a provider's error answers read, as the engine sees them: vendor-blind.

A provider hands the engine its :class:`Envelope` (``ProviderCredentials.envelope``): where its
error bodies keep the message, the request ID and the per-field errors. The engine reads every
failure through it and never names a vendor. :class:`JsonEnvelope` covers the usual JSON shapes
by the keys it is given; a provider whose bodies need more implements :class:`Envelope` itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

#: Longer server messages are cut: they end up in exception messages and logs.
MAX_MESSAGE = 500


@dataclass(frozen=True)
class ErrorBody:
    """What a provider said about a failure."""

    message: str | None = None
    request_id: str | None = None
    field_errors: dict[str, str] = field(default_factory=dict)


class UnreadableAnswer(Exception):
    """A successful answer whose body cannot be read; ``why`` says what was wrong with it."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class Envelope(Protocol):
    """How a provider's answers read."""

    def read_error(self, response: httpx.Response) -> ErrorBody:
        """The message, request ID and field errors of an error answer (any body, even none)."""
        ...

    def read_success(self, response: httpx.Response) -> Any:
        """The data of a successful answer (``None`` for an empty body).

        Raises:
            UnreadableAnswer: the body is not what this provider sends; the engine decides what
                that means from the request's idempotency.
        """
        ...


def text_of(value: Any) -> str | None:
    """A message out of a string, a list of them, or an object holding one."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        joined = "; ".join(t for t in (text_of(item) for item in value) if t)
        return joined or None
    if isinstance(value, dict):
        for key in ("message", "msg", "error", "detail"):
            if key in value:
                return text_of(value[key])
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def validation_errors(detail: list[Any]) -> dict[str, str]:
    """FastAPI's and pydantic's ``[{loc, msg, type}]`` as ``{field path: message}``."""
    errors: dict[str, str] = {}
    for item in detail:
        if not isinstance(item, dict):
            continue
        loc = item.get("loc") or []
        path = ".".join(str(part) for part in loc if part not in ("body", "query", "path"))
        errors[path or "request"] = str(item.get("msg", "invalid"))
    return errors


@dataclass(frozen=True)
class JsonEnvelope:
    """An error body that is a JSON object, read by keys.

    Attributes:
        message_keys: where the message may be, first found wins (a list of messages is joined).
        request_id_keys: where the request ID may be.
        field_errors_key: an object of ``{field: message}``, if the provider sends one.
        validation_detail: a ``detail`` list in FastAPI's ``[{loc, msg, type}]`` shape is read
            as field errors.
    """

    message_keys: tuple[str, ...] = ("message", "detail", "error")
    request_id_keys: tuple[str, ...] = ("request_id", "requestId")
    field_errors_key: str | None = None
    validation_detail: bool = False

    def read_success(self, response: httpx.Response) -> Any:
        if not response.content:
            return None
        try:
            # strict=False: providers put raw control characters inside strings.
            return json.loads(response.content, strict=False)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UnreadableAnswer(f"invalid JSON ({exc})") from None

    def read_error(self, response: httpx.Response) -> ErrorBody:
        try:
            payload = json.loads(response.content) if response.content else None
        except (ValueError, UnicodeDecodeError):
            text = response.content[:MAX_MESSAGE].decode("utf-8", errors="replace").strip()
            return ErrorBody(message=text or None)
        if not isinstance(payload, dict):
            return ErrorBody(message=text_of(payload))
        request_id = next((payload[k] for k in self.request_id_keys if payload.get(k)), None)
        field_errors: dict[str, str] = {}
        raw_fields = payload.get(self.field_errors_key) if self.field_errors_key else None
        if isinstance(raw_fields, dict):
            field_errors = {str(k): str(v) for k, v in raw_fields.items()}
        detail = payload.get("detail")
        detail_is_validation = self.validation_detail and isinstance(detail, list)
        if detail_is_validation:
            assert isinstance(detail, list)
            field_errors = {**field_errors, **validation_errors(detail)}
        message = None
        for key in self.message_keys:
            if key in payload and not (key == "detail" and detail_is_validation):
                message = text_of(payload[key])
                if message:
                    break
        if message is None and field_errors:
            message = "invalid request"
        return ErrorBody(
            message=message[:MAX_MESSAGE] if message else None,
            request_id=str(request_id) if request_id else None,
            field_errors=field_errors,
        )


#: What the engine reads when a provider gives no envelope of its own.
GENERIC = JsonEnvelope(
    message_keys=("messages", "message", "detail", "data", "error", "status"),
    request_id_keys=("request_id", "requestID", "requestId"),
    field_errors_key="field_errors",
    validation_detail=True,
)
