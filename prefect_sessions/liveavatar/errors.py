"""LiveAvatar-specific refinements of the package's errors."""

from __future__ import annotations

from typing import Any

from prefect_sessions.errors import ProviderError

PROVIDER = "LiveAvatar"

#: The envelope code of a successful LiveAvatar response (the OpenAPI's default, 100, is not used
#: by the live API; the official web SDK treats anything but 1000 as a failure).
SUCCESS_CODE = 1000


class LiveAvatarResponseError(ProviderError):
    """LiveAvatar answered with a 2xx status, but its ``{code, data, message}`` envelope did not
    say success (``code`` is not 1000), or the body was not that envelope at all.

    Attributes:
        envelope_code: the ``code`` the server sent, or ``None`` when there was none.
    """

    def __init__(self, *, envelope_code: int | None = None, **kwargs: Any) -> None:
        self.envelope_code = envelope_code
        super().__init__(**kwargs)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "envelope_code": self.envelope_code}
