"""Every credentials block of the package passes Prefect's own block standards."""

from __future__ import annotations

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from prefect.utilities.dispatch import get_registry_for_type
from prefect.utilities.importtools import to_qualified_name

import prefect_sessions  # noqa: F401  (imports and so registers every block of the package)

BLOCKS = sorted(
    (
        block
        for block in (get_registry_for_type(Block) or {}).values()
        if to_qualified_name(block).startswith("prefect_sessions")
    ),
    key=lambda block: block.__name__,
)


@pytest.mark.parametrize("block", BLOCKS, ids=[block.__name__ for block in BLOCKS])
class TestAllBlocksAdhereToStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, block: type[Block]) -> type[Block]:
        return block
