"""``python -m prefect_sessions.emulator``: the same as ``prefect-sessions emulator``."""

import sys

from prefect_sessions.emulator.cli import main

raise SystemExit(main(sys.argv[1:]))
