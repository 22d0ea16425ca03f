"""Reading a suite file: parse it, check the environment it needs, and expand every conversation
once, so that a run finds every problem before any request is sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect_sessions.conversation.dataset import iter_conversations
from prefect_sessions.conversation.selection import EVERYTHING, Selection
from prefect_sessions.conversation.suite import LoadedSuite, Suite, SuiteError, parse_suite

#: A suite file larger than this is refused before parsing (datasets hold the bulk data).
MAX_SUITE_BYTES = 5 * 1024 * 1024

#: What expanding found (the selected conversations and runs) for suites already expanded in this
#: process, by the bytes of the suite and its datasets and the selection: the CLI checks a suite
#: before its flow loads it again, and a run of 100,000 rows must not expand them twice.
_EXPANDED: dict[tuple[object, ...], tuple[int, int]] = {}
_EXPANDED_KEPT = 8
_EXPANDED_LOCK = threading.Lock()

#: A suite this large is remembered across processes too (a resumed run is a new process, and
#: expanding 100,000 rows to check them again takes seconds): in the cache directory, under the
#: hash of what the expansion depends on. Smaller suites expand faster than a file is read.
REMEMBERED_FROM = 5_000


def _cache_dir() -> Path:
    """``$PREFECT_SESSIONS_CACHE_DIR``, else ``$XDG_CACHE_HOME/prefect-sessions``, else
    ``~/.cache/prefect-sessions``."""
    given = os.environ.get("PREFECT_SESSIONS_CACHE_DIR")
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prefect-sessions"


def _remembered_file(key: tuple[object, ...]) -> Path:
    name = hashlib.sha256(repr(key).encode()).hexdigest()[:32]
    return _cache_dir() / "expanded" / f"{name}.json"


def _remembered(key: tuple[object, ...]) -> tuple[int, int] | None:
    """Counts an earlier process found for the same suite, datasets and selection; an
    unreadable or odd file is ignored (the suite is then expanded)."""
    try:
        data = json.loads(_remembered_file(key).read_text(encoding="utf-8"))
        counts = (int(data["conversations"]), int(data["runs"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return counts if counts[0] > 0 and counts[1] >= counts[0] else None


def _remember(key: tuple[object, ...], counts: tuple[int, int]) -> None:
    path = _remembered_file(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(
            json.dumps({"conversations": counts[0], "runs": counts[1]}), encoding="utf-8"
        )
        temporary.replace(path)
    except OSError:
        pass  # only a shortcut: the next process expands the suite again


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
    expanded = _expansion_key(loaded, raw)
    with _EXPANDED_LOCK:
        counts = _EXPANDED.get(expanded) if expanded is not None else None
    if counts is None and expanded is not None:
        counts = _remembered(expanded)
    expanding = counts is None  # neither this process nor an earlier one has counted it
    if counts is not None:
        loaded.conversation_count, loaded.run_count = counts
    else:
        problems.extend(_expansion_problems(loaded, source))
    if problems:
        raise SuiteError(source, problems)
    if expanded is not None:
        counts = (loaded.conversation_count, loaded.run_count)
        with _EXPANDED_LOCK:
            while len(_EXPANDED) >= _EXPANDED_KEPT:
                del _EXPANDED[next(iter(_EXPANDED))]
            _EXPANDED[expanded] = counts
        if expanding and counts[0] >= REMEMBERED_FROM:
            _remember(expanded, counts)
    return loaded


def _expansion_key(loaded: LoadedSuite, raw: bytes) -> tuple[object, ...] | None:
    """What an expansion depends on: the suite's bytes, its datasets' bytes and the selection
    (None when a dataset cannot be read: expanding says why)."""
    digest = hashlib.sha256(raw)
    for spec in loaded.suite.conversations:
        if spec.dataset is not None:
            try:
                digest.update((loaded.base_dir / spec.dataset).read_bytes())
            except OSError:
                return None
    return (str(loaded.path.resolve()), digest.hexdigest(), loaded.selection)


def _expansion_problems(loaded: LoadedSuite, source: str) -> list[str]:
    """Expanding every conversation checks every dataset row and template without keeping them;
    it counts the conversations the selection takes, and their runs."""
    problems: list[str] = []
    selection = loaded.selection
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
    return problems


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
