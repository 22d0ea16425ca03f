"""The blocks command (``python -m blocks``) against the session-wide Prefect server: it registers
the block types, creates or updates blocks idempotently, refuses bad input before saving anything,
and never prints a secret."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from prefect_sessions.block_setup import block_types, main
from prefect_sessions.liveavatar import LiveAvatarCredentials
from prefect_sessions.vectara import VectaraCredentials
from prefect_sessions.voiceflow import VoiceflowCredentials

pytestmark = pytest.mark.usefixtures("prefect_server")

ROOT = Path(__file__).resolve().parents[2]
VOICEFLOW_CANARY = "VF.DM.canary0blocks0command.s3cr3t-9f1b"
LIVEAVATAR_CANARY = "CANARY-blocks-liveavatar-41c7"
CANARIES = (VOICEFLOW_CANARY, LIVEAVATAR_CANARY)


def unique(prefix: str) -> str:
    # The Prefect server is shared by the whole session: every test gets its own block names.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, env, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "blocks.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def document(slug: str, name: str) -> Any | None:
    async with get_client() as prefect:
        try:
            return await prefect.read_block_document_by_name(
                name=name, block_type_slug=slug, include_secrets=False
            )
        except ObjectNotFound:
            return None


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for canary in CANARIES:
            assert canary not in text


@pytest.fixture
def env() -> dict[str, str]:
    return {"VOICEFLOW_API_KEY": VOICEFLOW_CANARY, "LIVEAVATAR_API_KEY": LIVEAVATAR_CANARY}


async def test_a_yaml_file_creates_then_leaves_then_updates_blocks(
    tmp_path: Path, env: dict[str, str], capfd: pytest.CaptureFixture[str]
):
    voiceflow, liveavatar = unique("vf"), unique("la")
    path = write(
        tmp_path,
        f"""
blocks:
  - type: voiceflow-credentials
    name: {voiceflow}
    api_key_env: VOICEFLOW_API_KEY
    project_id: proj-123
  - type: LiveAvatarCredentials
    name: {liveavatar}
    api_key_env: LIVEAVATAR_API_KEY
    base_url: http://127.0.0.1:8787
    pacing_rate: 5
""",
    )

    saved = [("voiceflow-credentials", voiceflow), ("liveavatar-credentials", liveavatar)]

    first = run(["--file", str(path)], env)
    ids = [(await document(slug, name)).id for slug, name in saved]
    second = run(["--file", str(path)], env)

    assert first[0] == 0, first[2]
    assert (
        f"voiceflow-credentials/{voiceflow}: created (api_key from $VOICEFLOW_API_KEY)"
        in (first[1])
    )
    assert f"liveavatar-credentials/{liveavatar}: created" in first[1]
    assert "Registered block types: liveavatar-credentials, vectara-credentials" in first[1]
    # Run twice, same result: nothing rewritten, same documents.
    assert second[0] == 0, second[2]
    assert f"voiceflow-credentials/{voiceflow}: unchanged" in second[1]
    assert f"liveavatar-credentials/{liveavatar}: unchanged" in second[1]
    assert [(await document(slug, name)).id for slug, name in saved] == ids
    loaded = await LiveAvatarCredentials.load(liveavatar)
    assert loaded.api_key.get_secret_value() == LIVEAVATAR_CANARY
    assert (loaded.base_url, loaded.pacing_rate) == ("http://127.0.0.1:8787", 5.0)
    assert (await VoiceflowCredentials.load(voiceflow)).project_id == "proj-123"

    # A rotated key updates the block in place.
    rotated = {**env, "LIVEAVATAR_API_KEY": "CANARY-blocks-liveavatar-rotated"}
    third = run(["--file", str(path)], rotated)
    assert third[0] == 0, third[2]
    assert f"liveavatar-credentials/{liveavatar}: updated" in third[1]
    assert f"voiceflow-credentials/{voiceflow}: unchanged" in third[1]
    reloaded = await LiveAvatarCredentials.load(liveavatar)
    assert reloaded.api_key.get_secret_value() == "CANARY-blocks-liveavatar-rotated"
    assert (await document("liveavatar-credentials", liveavatar)).id == ids[1]

    captured = capfd.readouterr()
    assert_no_secret(*first[1:], *second[1:], *third[1:], captured.out, captured.err)
    assert "CANARY-blocks-liveavatar-rotated" not in third[1] + third[2]


async def test_environment_variables_alone_create_blocks(env: dict[str, str]):
    name = unique("from-env")
    environ = {
        "LIVEAVATAR_API_KEY": LIVEAVATAR_CANARY,
        "LIVEAVATAR_BLOCK_NAME": name,
        "LIVEAVATAR_BASE_URL": "http://127.0.0.1:9999",
        "LIVEAVATAR_MAX_ATTEMPTS": "2",
        "UNRELATED": "x",
    }

    code, out, err = run([], environ)
    again = run([], environ)

    assert code == 0, err
    assert f"liveavatar-credentials/{name}: created" in out
    assert "$LIVEAVATAR_API_KEY" in out
    assert again[0] == 0
    assert f"liveavatar-credentials/{name}: unchanged" in again[1]
    loaded = await LiveAvatarCredentials.load(name)
    assert (loaded.base_url, loaded.max_attempts) == ("http://127.0.0.1:9999", 2)
    assert_no_secret(out, err, *again[1:])


BAD_INPUTS = {
    "missing environment variable": (
        """
  - type: liveavatar-credentials
    name: {other}
    api_key_env: NOT_SET_ANYWHERE
""",
        "api_key_env names $NOT_SET_ANYWHERE, which is not set: export NOT_SET_ANYWHERE",
    ),
    "unknown block type": (
        """
  - type: slack-credentials
    name: {other}
""",
        "unknown block type 'slack-credentials': set `type` to one of liveavatar-credentials, "
        "vectara-credentials, voiceflow-credentials",
    ),
    "secret written in the file": (
        """
  - type: liveavatar-credentials
    name: {other}
    api_key: """
        + LIVEAVATAR_CANARY
        + """
""",
        "api_key is a secret and must not be written in the file: replace it with "
        "`api_key_env: LIVEAVATAR_API_KEY`",
    ),
    "unknown field": (
        """
  - type: voiceflow-credentials
    name: {other}
    api_key_env: VOICEFLOW_API_KEY
    project: p1
""",
        "unknown field 'project': voiceflow-credentials has",
    ),
    "missing required field": (
        """
  - type: voiceflow-credentials
    name: {other}
    api_key_env: VOICEFLOW_API_KEY
""",
        "project_id is required: add `project_id: <value>`",
    ),
    "invalid value": (
        """
  - type: liveavatar-credentials
    name: {other}
    api_key_env: LIVEAVATAR_API_KEY
    timeout_seconds: -1
""",
        "timeout_seconds: Input should be greater than 0",
    ),
    "two ways to sign in": (
        """
  - type: vectara-credentials
    name: {other}
    api_key_env: LIVEAVATAR_API_KEY
    client_id: app
    client_secret_env: VOICEFLOW_API_KEY
""",
        "give either api_key or client_id and client_secret, not both",
    ),
    "bad block name": (
        """
  - type: liveavatar-credentials
    name: Not A Valid Name
    api_key_env: LIVEAVATAR_API_KEY
""",
        "is not a valid block name: use lowercase letters, digits and dashes",
    ),
    "bad YAML": (
        """
  - type: liveavatar-credentials
    name: {other}
    api_key: [unclosed """
        + LIVEAVATAR_CANARY
        + """
""",
        "not valid YAML at line",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
async def test_bad_input_is_refused_and_nothing_is_saved(
    case: str, tmp_path: Path, env: dict[str, str], capfd: pytest.CaptureFixture[str]
):
    valid, other = unique("valid"), unique("other")
    body, expected = BAD_INPUTS[case]
    # The valid block comes first: validating everything before saving means it is not saved.
    path = write(
        tmp_path,
        f"""
blocks:
  - type: liveavatar-credentials
    name: {valid}
    api_key_env: LIVEAVATAR_API_KEY
"""
        + body.replace("{other}", other),
    )

    code, out, err = run(["--file", str(path)], env)

    assert code == 2
    assert expected in err
    assert err.rstrip().endswith("Nothing was saved.")
    assert out == ""
    assert await document("liveavatar-credentials", valid) is None
    for slug in ("liveavatar-credentials", "voiceflow-credentials", "vectara-credentials"):
        assert await document(slug, other) is None
    captured = capfd.readouterr()
    assert_no_secret(out, err, captured.out, captured.err)


def test_an_environment_without_credentials_is_refused():
    code, _, err = run([], {"PATH": "/usr/bin"})

    assert code == 2
    assert "no credentials in the environment: export one of LIVEAVATAR_API_KEY" in err
    assert "or pass --file FILE" in err


def test_environment_mode_names_the_variable_to_export():
    code, _, err = run([], {"VOICEFLOW_API_KEY": VOICEFLOW_CANARY})

    assert code == 2
    assert "voiceflow-credentials/default: project_id is required: export VOICEFLOW_PROJECT_ID" in (
        err
    )
    assert_no_secret(err)


async def test_check_only_validates_and_saves_nothing(tmp_path: Path, env: dict[str, str]):
    name = unique("checked")
    path = write(
        tmp_path,
        f"blocks:\n  - type: liveavatar-credentials\n    name: {name}\n"
        "    api_key_env: LIVEAVATAR_API_KEY\n",
    )

    code, out, _ = run(["--file", str(path), "--check"], env)

    assert code == 0
    assert f"liveavatar-credentials/{name}: valid (api_key from $LIVEAVATAR_API_KEY)" in out
    assert await document("liveavatar-credentials", name) is None


def test_the_registered_types_are_the_packages_credentials_blocks():
    assert block_types() == [LiveAvatarCredentials, VectaraCredentials, VoiceflowCredentials]


@pytest.mark.parametrize(
    "command", [["-m", "blocks"], ["blocks/register.py"]], ids=["module", "script"]
)
async def test_the_command_runs_from_a_shell(command: list[str], tmp_path: Path):
    name = unique("shell")
    path = write(
        tmp_path,
        f"blocks:\n  - type: liveavatar-credentials\n    name: {name}\n"
        "    api_key_env: LIVEAVATAR_API_KEY\n",
    )
    environ = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "LIVEAVATAR_API_KEY": LIVEAVATAR_CANARY,
    }

    done = subprocess.run(
        [sys.executable, *command, "--file", str(path)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert f"liveavatar-credentials/{name}: created" in done.stdout
    assert_no_secret(done.stdout, done.stderr)
    loaded = await LiveAvatarCredentials.load(name)
    assert loaded.api_key.get_secret_value() == LIVEAVATAR_CANARY


def test_the_package_command_runs_it_as_prefect_sessions_blocks(
    tmp_path: Path, capsys, monkeypatch
):
    from prefect_sessions.cli import main as cli_main

    monkeypatch.setenv("LIVEAVATAR_API_KEY", LIVEAVATAR_CANARY)
    path = write(
        tmp_path,
        "blocks:\n  - type: liveavatar-credentials\n    name: via-cli\n"
        "    api_key_env: LIVEAVATAR_API_KEY\n",
    )
    assert cli_main(["blocks", "--file", str(path), "--check"]) == 0
    shown = capsys.readouterr()
    assert "liveavatar-credentials/via-cli" in shown.out
    assert_no_secret(shown.out, shown.err)
