"""Reach the emulator's state from a request.

Typed ``Any`` on purpose: :mod:`.state` builds every vendor's store, so a vendor's routes cannot
import it back. Each vendor module types the part it reads with a small protocol instead.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import HTTPConnection


def emulator_state(connection: HTTPConnection) -> Any:
    """The state of the app serving this request or websocket."""
    return connection.app.state.emulator
