"""Reach the emulator's state from a request, without import cycles between state and routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

if TYPE_CHECKING:
    from prefect_sessions.emulator.state import EmulatorState


def emulator_state(connection: HTTPConnection) -> EmulatorState:
    """The state of the app serving this request or websocket."""
    state: EmulatorState = connection.app.state.emulator
    return state
