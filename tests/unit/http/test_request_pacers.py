"""Which pacer a request with its own credential goes through: the client's, unless the provider
counts that credential apart (LiveAvatar's session tokens)."""

from __future__ import annotations

from pydantic import SecretStr

from prefect_sessions.http import HttpClient, SecretHeaderAuth
from prefect_sessions.http import client as engine


def make() -> HttpClient:
    key = SecretHeaderAuth("x-api-key", SecretStr("request-pacers-key"))
    return HttpClient(base_url="http://127.0.0.1:9", provider="Test", auth=key)


def test_a_session_key_shares_the_clients_pacer():
    http = make()
    session_key = SecretHeaderAuth("authorization", SecretStr("voiceflow-session-key"))
    assert http._pacer_for(session_key) is http.pacer
    assert http._pacer_for(None) is http.pacer


def test_a_credential_with_its_own_budget_gets_its_own_pacer_kept_for_recent_ones(monkeypatch):
    monkeypatch.setattr(engine, "MAX_REQUEST_PACERS", 2)
    http = make()
    tokens = [
        SecretHeaderAuth("authorization", SecretStr(f"token-{i}"), scheme="Bearer", own_budget=True)
        for i in range(3)
    ]
    first = http._pacer_for(tokens[0])
    assert first is not http.pacer
    assert http._pacer_for(tokens[0]) is first  # the same token, the same pacer
    http._pacer_for(tokens[1])
    http._pacer_for(tokens[2])  # the oldest is forgotten
    assert http._pacer_for(tokens[0]) is not first
