"""``python -m blocks``: register the block types and create or update credentials blocks."""

import sys

from prefect_sessions.block_setup import main

if __name__ == "__main__":
    sys.exit(main())
