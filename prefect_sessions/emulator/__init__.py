"""A local emulator of the Voiceflow runtime, Vectara Agents and LiveAvatar APIs.

One ASGI app serves all three on one port with in-memory state, the providers' auth, rate limits
and error envelopes, a scripted agent, and faults on demand. Run it:

- in tests: ``with run_emulator() as emulator: ...`` (``emulator.url``), or the pytest fixture
  ``emulator`` this package registers;
- in process: ``httpx.ASGITransport(app=create_app())``;
- from a shell: ``prefect-sessions emulator --port 8787``.
"""

from prefect_sessions.emulator.agent import AgentScript
from prefect_sessions.emulator.app import create_app
from prefect_sessions.emulator.config import (
    FAULT_KINDS,
    EmulatorConfig,
    EmulatorConfigError,
    RateLimit,
)
from prefect_sessions.emulator.faults import ABORT_EXTENSION, FAULT_HEADER, LATENCY_HEADER
from prefect_sessions.emulator.server import EmulatorHandle, run_emulator

__all__ = [
    "ABORT_EXTENSION",
    "FAULT_HEADER",
    "FAULT_KINDS",
    "LATENCY_HEADER",
    "AgentScript",
    "EmulatorConfig",
    "EmulatorConfigError",
    "EmulatorHandle",
    "RateLimit",
    "create_app",
    "run_emulator",
]
