"""``python -m prefect_sessions.cli``: the same as ``prefect-sessions``."""

from prefect_sessions.cli import main

raise SystemExit(main())
