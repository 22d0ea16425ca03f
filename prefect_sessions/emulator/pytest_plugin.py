"""pytest fixtures for testing flows against the emulator (registered through ``pytest11``).

- ``emulator_config`` (session): the :class:`EmulatorConfig`; override it in a ``conftest.py``.
- ``emulator_server`` (session): one real server on 127.0.0.1 for the whole run.
- ``emulator`` (function): that server, reset (no sessions, counters, windows or queued faults),
  as an :class:`EmulatorHandle` with ``.url``.

Example:
    ```python
    def test_refund(emulator):
        credentials = VoiceflowCredentials(api_key="VF.DM.test.key", base_url=emulator.url)
        ...
        assert emulator.count("rate_limited") == 0
    ```
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from prefect_sessions.emulator.config import EmulatorConfig
from prefect_sessions.emulator.server import EmulatorHandle, run_emulator


@pytest.fixture(scope="session")
def emulator_config() -> EmulatorConfig:
    """The configuration of the session's emulator; override to change limits, faults or agent."""
    return EmulatorConfig()


@pytest.fixture(scope="session")
def emulator_server(emulator_config: EmulatorConfig) -> Iterator[EmulatorHandle]:
    """One emulator on 127.0.0.1 for the whole test session."""
    with run_emulator(emulator_config) as handle:
        yield handle


@pytest.fixture
def emulator(emulator_server: EmulatorHandle) -> EmulatorHandle:
    """The session's emulator, reset to a clean state for this test."""
    emulator_server.reset()
    return emulator_server
