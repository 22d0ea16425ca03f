"""``prefect-sessions blocks`` (and ``python -m blocks``): the command's options and its run."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from prefect.utilities.asyncutils import run_coro_as_sync

from prefect_sessions.block_setup.apply import apply
from prefect_sessions.block_setup.plan import (
    BlockSetupError,
    _scrub,
    block_types,
    env_prefix,
    plan_from_env,
    plan_from_yaml,
    secret_fields,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prefect-sessions blocks",
        description=(
            "Register prefect-sessions' block types with the Prefect server at PREFECT_API_URL "
            "and create or update credentials blocks. Secrets are read from environment "
            "variables only and never printed."
        ),
    )
    parser.add_argument(
        "-f",
        "--file",
        type=Path,
        help=(
            "a YAML file of blocks (see blocks/blocks.example.yaml); without it, blocks come "
            f"from {', '.join(env_prefix(cls) + '*' for cls in block_types())} environment "
            "variables"
        ),
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only validate the input and show what would be saved; contact no server",
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The command. Returns 0 on success, 2 for unusable input (nothing saved), 1 when the
    Prefect server failed."""
    out, err = out or sys.stdout, err or sys.stderr
    environ = os.environ if environ is None else environ
    args = _parser().parse_args(argv)
    try:
        if args.file is not None:
            try:
                text = args.file.read_text(encoding="utf-8")
            except OSError as exc:
                raise BlockSetupError(
                    [f"{args.file}: cannot read it ({exc.strerror}): check the path"]
                ) from None
            planned = plan_from_yaml(text, environ, source=str(args.file))
        else:
            planned = plan_from_env(environ)
    except BlockSetupError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=err)
        print("Nothing was saved.", file=err)
        return 2
    if args.check:
        for item in planned:
            print(f"{item.slug}: valid{item.describe()}", file=out)
        print("Checked only: nothing was saved.", file=out)
        return 0
    try:
        # Works with or without a running event loop (a notebook, a test, an async caller).
        results = run_coro_as_sync(apply(planned))
        assert results is not None
    except Exception as exc:
        # A server's error may quote the request body: scrub every secret we were given.
        secrets = [
            environ[variable]
            for item in planned
            for name, variable in item.sources.items()
            if name in secret_fields(item.cls)
        ]
        message = _scrub(f"{type(exc).__name__}: {exc}", secrets)
        print(f"error: the Prefect server failed: {message}", file=err)
        return 1
    slugs = ", ".join(cls.get_block_type_slug() for cls in block_types())
    print(f"Registered block types: {slugs}", file=out)
    for item, outcome in results:
        print(f"{item.slug}: {outcome}{item.describe()}", file=out)
    return 0
