"""``python blocks/register.py``: the same command as ``python -m blocks``, runnable by path."""

import sys

from prefect_sessions.block_setup import main

if __name__ == "__main__":
    sys.exit(main())
