"""What a LiveAvatar conversation costs: its session minutes, and credits outside the sandbox."""

from __future__ import annotations

from pydantic import SecretStr

from prefect_sessions.liveavatar.adapter import LiveAvatarAdapter, _Handle
from prefect_sessions.seam.adapter import ConnectionSettings, ReportsUsage


def adapter(sandbox: bool) -> LiveAvatarAdapter:
    return LiveAvatarAdapter(
        ConnectionSettings(api_key=SecretStr("k"), fields={"is_sandbox": sandbox})
    )


def test_full_mode_minutes_cost_two_credits_each_and_the_sandbox_none():
    handle = _Handle(session_id="s", started=100.0, ended=190.0)
    assert isinstance(adapter(False), ReportsUsage)
    assert adapter(False).usage(handle) == {"session_minutes": 1.5, "credits": 3.0}
    assert adapter(True).usage(handle) == {"session_minutes": 1.5, "credits": 0.0}
    assert adapter(False).usage(_Handle()) == {}  # never started: nothing spent
