"""``prefect-sessions crawl`` against the emulator over real HTTP: the built-in agent's button
paths (the crawl ends, finds each path, and its suite passes when run), and an agent whose menu
loops (loops end at a state already seen, caps and ignored buttons are said)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from prefect_sessions.cli import main
from prefect_sessions.emulator.agent import AgentScript
from prefect_sessions.emulator.config import EmulatorConfig
from prefect_sessions.emulator.server import run_emulator

LOOPING_AGENT = """\
name: Looping menu
greeting:
  replies:
    - text: "Main menu."
    - choice:
        buttons:
          - {label: "Billing", intent: billing}
          - {label: "Shipping", intent: shipping}
          - {label: "Open our site", url: "https://example.com"}
          - {label: "Admin tools", intent: admin}
intents:
  - name: billing
    patterns: [billing]
    replies:
      - text: "Billing. Pay or go back?"
      - choice:
          buttons:
            - {label: "Pay now", intent: pay}
            - {label: "Back to the menu", intent: menu}
  - name: pay
    patterns: [pay]
    replies:
      - text: "Paid. Goodbye."
    end: true
  - name: shipping
    patterns: [shipping]
    replies:
      - text: "Shipping takes a week."
      - choice:
          buttons:
            - {label: "Back to the menu", intent: menu}
  - name: admin
    patterns: [admin]
    replies:
      - text: "Admin only."
  - name: menu
    patterns: [menu]
    replies:
      - text: "Main menu."
      - choice:
          buttons:
            - {label: "Billing", intent: billing}
            - {label: "Shipping", intent: shipping}
            - {label: "Open our site", url: "https://example.com"}
            - {label: "Admin tools", intent: admin}
fallback:
  replies:
    - text: "Sorry?"
"""


def _suite(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "source.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: menu
            provider: voiceflow
            connection: {{base_url: "{url}", api_key_env: CRAWL_KEY, project_id: crawl}}
            conversations: [{{id: a, turns: [launch: {{}}]}}]
            """
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("CRAWL_KEY", "VF.DM.crawl-test")


def _ids(path: Path) -> list[str]:
    return [c["id"] for c in yaml.safe_load(path.read_text())["conversations"]]


@pytest.mark.usefixtures("prefect_server")
def test_the_built_in_agent_is_crawled_to_every_path_and_its_suite_passes(tmp_path, capsys):
    with run_emulator() as emulator:
        out = tmp_path / "crawled.yaml"
        source = _suite(tmp_path, emulator.url)
        assert main(["crawl", "--suite", str(source), "--out", str(out), "--depth", "3"]) == 0
        assert sorted(_ids(out)) == [
            "crawl--request-a-refund",
            "crawl--start",
            "crawl--talk-to-a-person",
            "crawl--track-my-order",
        ]
        # Every path is a fresh session: the launch, then its presses.
        start = "POST /v4/project/{projectID}/environment/{environmentID}/session"
        assert emulator.count(route=start) == 4
        capsys.readouterr()
        code = main(["run", str(out), "--results-dir", str(tmp_path / "r"), "--progress", "none"])
        assert code == 0, capsys.readouterr()
        assert "4 passed" in capsys.readouterr().out


def test_a_looping_menu_ends_at_states_already_seen(tmp_path, capsys):
    config = EmulatorConfig(agent=AgentScript.from_yaml(LOOPING_AGENT))
    with run_emulator(config) as emulator:
        out = tmp_path / "crawled.yaml"
        source = _suite(tmp_path, emulator.url)
        argv = ["crawl", "--suite", str(source), "--out", str(out), "--depth", "6"]
        assert main([*argv, "--ignore", "admin"]) == 0
        printed = capsys.readouterr()
        assert sorted(_ids(out)) == [
            "crawl--billing",
            "crawl--billing--back-to-the-menu",
            "crawl--billing--pay-now",
            "crawl--shipping",
            "crawl--shipping--back-to-the-menu",
            "crawl--start",
        ]
        assert "2 led back to a state already seen" in printed.out
        assert "reached the depth" not in printed.err  # it ended by itself, well before 6
        text = out.read_text()
        assert "Open our site" not in text  # a URL button is never pressed, nor expected
        assert "crawl--admin-tools" not in text  # an ignored button is never pressed


def test_the_depth_and_the_count_caps_are_said(tmp_path, capsys):
    config = EmulatorConfig(agent=AgentScript.from_yaml(LOOPING_AGENT))
    with run_emulator(config) as emulator:
        source = _suite(tmp_path, emulator.url)
        shallow = tmp_path / "shallow.yaml"
        assert main(["crawl", "--suite", str(source), "--out", str(shallow), "--depth", "1"]) == 0
        assert "reached the depth (1): 3 buttons deeper were not pressed" in capsys.readouterr().err
        few = tmp_path / "few.yaml"
        assert main(["crawl", "--suite", str(source), "--out", str(few), "--max-paths", "2"]) == 0
        assert "stopped at the count cap (2 paths)" in capsys.readouterr().err
        assert len(_ids(few)) == 2


def test_an_exit_criterion_ends_a_path(tmp_path, capsys):
    config = EmulatorConfig(agent=AgentScript.from_yaml(LOOPING_AGENT))
    with run_emulator(config) as emulator:
        source = _suite(tmp_path, emulator.url)
        out = tmp_path / "out.yaml"
        argv = ["crawl", "--suite", str(source), "--out", str(out), "--exit-on", "^Billing"]
        assert main([*argv, "--ignore", "admin"]) == 0
        assert "crawl--billing--pay-now" not in _ids(out)
        assert "crawl--shipping--back-to-the-menu" in _ids(out)
