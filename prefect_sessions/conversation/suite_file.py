"""Reading a suite file: parse it, check the environment it needs, and expand every conversation
once, so that a run finds every problem before any request is sent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect_sessions.conversation.dataset import iter_conversations
from prefect_sessions.conversation.selection import EVERYTHING, Selection
from prefect_sessions.conversation.suite import LoadedSuite, Suite, SuiteError, parse_suite

#: A suite file larger than this is refused before parsing (datasets hold the bulk data).
MAX_SUITE_BYTES = 5 * 1024 * 1024


def load_suite(
    path: str | Path,
    *,
    environ: dict[str, str] | None = None,
    selection: Selection = EVERYTHING,
    credentials_given: bool = False,
) -> LoadedSuite:
    """Read and validate a suite file, its datasets and the environment it needs, keeping the
    conversations ``selection`` takes. With ``credentials_given`` (a block given to the run), the
    suite's inline connection needs no key in the environment.

    Raises:
        SuiteError: with every problem found, each with its location and fix; a selection that
            takes no conversation is one.
    """
    path = Path(path)
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_SUITE_BYTES:
            raise SuiteError(
                source,
                [
                    f"{source}: the file is {size} bytes; keep suites under "
                    f"{MAX_SUITE_BYTES} bytes and put bulk rows in a dataset (CSV or JSONL)"
                ],
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise SuiteError(source, [f"{source}: cannot read the file: {exc.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError(
            source, [f"{source}: byte {exc.start} is not UTF-8; save the file as UTF-8"]
        ) from None
    suite = parse_suite(text, source)
    loaded = LoadedSuite(suite=suite, path=path, selection=selection)
    environment = os.environ if environ is None else environ
    problems = [] if credentials_given else list(_environment_problems(suite, source, environment))
    if suite.judge_model is not None:  # the model's key is never the provider's block's
        problems.extend(
            f"{source}: judge_model.api_key_env: {problem}"
            for problem in suite.judge_model.environment_problems(environment)
        )
    # Expanding every conversation checks every dataset row and template without keeping them.
    known_tags: set[str] = set()
    try:
        for conversation in iter_conversations(loaded, selected=False):
            known_tags.update(conversation.tags)
            if selection.takes(conversation.id, conversation.tags):
                loaded.conversation_count += 1
                loaded.run_count += conversation.repeats
    except SuiteError as exc:
        problems.extend(exc.problems)
    else:
        if loaded.conversation_count == 0:
            problems.append(f"{source}: {selection.nothing_matched(known_tags)}")
    if problems:
        raise SuiteError(source, problems)
    return loaded


def _environment_problems(
    suite: Suite, source: str, environ: dict[str, str] | Any
) -> Iterator[str]:
    connection = suite.connection
    if connection is None or suite.credentials is not None:
        return  # the key comes from the saved block
    if not connection.api_key_env:
        yield (
            f"{source}: connection.api_key_env: name the environment variable that holds the "
            f"API key (e.g. api_key_env: {suite.provider.upper()}_API_KEY)"
        )
    elif not environ.get(connection.api_key_env):
        yield (
            f"{source}: connection.api_key_env: the environment variable "
            f"{connection.api_key_env} is not set; export it with the API key "
            "(any non-empty value works against the emulator)"
        )
