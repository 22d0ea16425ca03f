"""``prefect-sessions record`` against the emulator over real HTTP, provider by provider:
Voiceflow's Analytics API (its data-as-string logs, redaction, its limit, a transcript that cannot
be read) and its legacy transcripts API, Vectara's session events, LiveAvatar's transcripts."""

from __future__ import annotations

import asyncio
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from prefect_sessions.cli import main
from prefect_sessions.conversation.suite_file import load_suite
from prefect_sessions.emulator.providers.voiceflow import Transcript
from prefect_sessions.emulator.server import EmulatorHandle, run_emulator
from prefect_sessions.recording.replay import replay
from prefect_sessions.recording.source import source_of
from prefect_sessions.seam.turns import Turn


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    for name in ("VOICEFLOW_API_KEY", "VECTARA_API_KEY", "LIVEAVATAR_API_KEY"):
        monkeypatch.setenv(name, "VF.DM.record-test" if name.startswith("VOICE") else "key-1")


def _suite(tmp_path: Path, url: str, provider: str, fields: str) -> Path:
    first_turn = "text: hi" if provider == "vectara" else "launch: {}"
    path = tmp_path / f"{provider}.yaml"
    key = f"{provider.upper()}_API_KEY"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: {provider}-source
            provider: {provider}
            connection: {{base_url: "{url}", api_key_env: {key}, {fields}}}
            conversations: [{{id: a, turns: [{first_turn}]}}]
            """
        ),
        encoding="utf-8",
    )
    return path


def _talk(suite: Path, scripts: list[list[Turn]]) -> None:
    """Conversations a user had with the agent (what the provider then keeps)."""
    loaded = load_suite(suite)
    source = source_of(loaded.suite)

    async def run() -> None:
        async with source.provider.adapter(source.settings) as adapter:
            for number, turns in enumerate(scripts):
                await replay(adapter, f"user-{number}", turns)

    asyncio.run(run())


def _conversations(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["conversations"]


def _voiceflow(emulator: EmulatorHandle, tmp_path: Path) -> Path:
    suite = _suite(tmp_path, emulator.url, "voiceflow", "project_id: rec")
    _talk(
        suite,
        [
            [Turn(kind="launch"), Turn(kind="text", value="mail me at ada@example.com, refund")],
            [Turn(kind="launch"), Turn(kind="button", value="Track my order")],
            [Turn(kind="launch"), Turn(kind="button", value="Track my order")],  # the same again
        ],
    )
    return suite


def test_voiceflow_transcripts_are_redacted_folded_and_bad_ones_skipped(tmp_path, capsys):
    with run_emulator() as emulator:
        suite = _voiceflow(emulator, tmp_path)
        broken = Transcript("f" * 24, "user-x", "rec", "main", 1.0, 1.0)
        broken.raw_logs.append(("action", "{not json", 1.0))
        emulator.state.voiceflow.transcripts[broken.id] = broken
        out = tmp_path / "out.yaml"
        assert main(["record", "--suite", str(suite), "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        assert f"skipped {'f' * 24}: a log entry's data is not JSON" in printed
        assert "Recorded 2 conversations from voiceflow" in printed
        assert "1 duplicates folded, 1 skipped" in printed
        text = out.read_text(encoding="utf-8")
        assert "ada@example.com" not in text
        assert "mail me at [EMAIL], refund" in text
        # Above each conversation, where it came from: both transcripts of the folded one.
        assert re.search(r"\n# from \w{24}, \w{24}\n- id: rec-\w{12}\n", text)
        load_suite(out)  # a valid suite

        unredacted = tmp_path / "unredacted.yaml"
        argv = ["record", "--suite", str(suite), "--out", str(unredacted), "--unredacted"]
        assert main(argv) == 0
        assert "mail me at ada@example.com, refund" in unredacted.read_text(encoding="utf-8")
        # The same file again is refused; --force replaces it.
        assert main(argv) == 2
        assert "exists: choose another --out, or add --force" in capsys.readouterr().err
        assert main([*argv, "--force"]) == 0


def test_voiceflow_selection_by_date_environment_and_count(tmp_path, capsys):
    with run_emulator() as emulator:
        suite = _voiceflow(emulator, tmp_path)
        out = tmp_path / "out.yaml"
        base = ["record", "--suite", str(suite), "--force", "--out", str(out)]
        assert main([*base, "--max", "1"]) == 0
        assert len(_conversations(out)) == 1
        assert main([*base, "--until", "2020-01-01"]) == 2
        assert "no conversation matched" in capsys.readouterr().err
        assert main([*base, "--since", "2020-01-01", "--environment", "main"]) == 0
        assert len(_conversations(out)) == 2
        assert main([*base, "--environment", "production"]) == 2
        assert main([*base, "--since", "yesterday"]) == 2
        assert "'yesterday' is not a date" in capsys.readouterr().err
        # A tag is a transcript property (the Analytics API) or a report tag (legacy).
        first = next(iter(emulator.state.voiceflow.transcripts.values()))
        first.properties.append({"id": "p1", "name": "review", "value": "reviewed"})
        assert main([*base, "--tag", "reviewed"]) == 0
        assert len(_conversations(out)) == 1
        emulator.state.voiceflow.legacy_projects.add("rec")
        assert main([*base, "--tag", "reviewed"]) == 0
        assert len(_conversations(out)) == 1


def test_the_analytics_api_limit_is_found_by_its_429s(tmp_path, capsys):
    with run_emulator() as emulator:
        suite = _voiceflow(emulator, tmp_path)
        emulator.set_limit("analytics", "2/1s")  # no headers: the engine learns it
        out = tmp_path / "out.yaml"
        assert main(["record", "--suite", str(suite), "--out", str(out)]) == 0
        assert "Recorded 2 conversations" in capsys.readouterr().out
        assert emulator.count("rate_limited") > 0


def test_a_legacy_project_is_read_from_the_legacy_api(tmp_path, capsys):
    with run_emulator() as emulator:
        suite = _voiceflow(emulator, tmp_path)
        emulator.state.voiceflow.legacy_projects.add("rec")
        out = tmp_path / "out.yaml"
        assert main(["record", "--suite", str(suite), "--out", str(out)]) == 0
        printed = capsys.readouterr()
        assert "legacy transcripts API instead" in printed.err
        assert "Recorded 2 conversations" in printed.out
        assert emulator.count(route="GET /v2/transcripts/{projectID}/{transcriptID}") == 3
        turns = [t for c in _conversations(out) for t in c["turns"]]
        assert {"button": "Track my order", "expect": turns[-1]["expect"]} in turns


@pytest.mark.usefixtures("prefect_server")
def test_vectara_sessions_become_a_suite_that_passes(tmp_path, capsys):
    with run_emulator() as emulator:
        suite = _suite(tmp_path, emulator.url, "vectara", "agent_key: agt_acme_support")
        _talk(
            suite,
            [
                [Turn(kind="text", value="I need a refund"), Turn(kind="text", value="#12345")],
                [Turn(kind="text", value="where is my order?")],
            ],
        )
        out = tmp_path / "out.yaml"
        assert main(["record", "--suite", str(suite), "--out", str(out)]) == 0
        assert "Recorded 2 conversations from vectara" in capsys.readouterr().out
        assert sorted(len(c["turns"]) for c in _conversations(out)) == [1, 2]
        code = main(["run", str(out), "--results-dir", str(tmp_path / "r"), "--progress", "none"])
        assert code == 0, capsys.readouterr()


def test_liveavatar_sessions_are_read_from_their_transcripts(tmp_path, capsys):
    with run_emulator() as emulator:
        suite = _suite(tmp_path, emulator.url, "liveavatar", "is_sandbox: true")
        _talk(suite, [[Turn(kind="launch"), Turn(kind="no_reply")]])
        out = tmp_path / "out.yaml"
        assert main(["record", "--suite", str(suite), "--out", str(out)]) == 0, capsys.readouterr()
        (conversation,) = _conversations(out)
        (launch,) = conversation["turns"]
        assert "launch" in launch
        assert "similar" in launch["expect"][0]
