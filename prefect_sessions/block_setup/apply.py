"""Saving the planned blocks on a Prefect server: register the block types, then create or update
each block, leaving an unchanged one alone."""

from __future__ import annotations

from collections.abc import Sequence

from prefect.blocks.core import Block
from prefect.client.orchestration import PrefectClient, get_client
from pydantic import ValidationError

from prefect_sessions.block_setup.plan import Outcome, PlannedBlock, block_types
from prefect_sessions.credentials import ProviderCredentials


async def _existing(planned: PlannedBlock, client: PrefectClient) -> ProviderCredentials | None:
    try:
        return await planned.cls.aload(planned.name, client=client)
    except ValueError:  # Prefect's "Unable to find block document named ..."
        return None
    except ValidationError:
        return None  # saved with an older schema: it will be overwritten


def _same(left: Block, right: Block) -> bool:
    # Field by field: SecretStr compares the secret values, and the block's private attributes
    # (document ID, name) must not count.
    return all(getattr(left, name) == getattr(right, name) for name in type(left).model_fields)


async def register_block_types(client: PrefectClient) -> list[str]:
    """Register every block type of the package (idempotent); returns their slugs."""
    slugs = []
    for cls in block_types():
        await cls.aregister_type_and_schema(client=client)
        slugs.append(cls.get_block_type_slug())
    return slugs


async def apply(
    planned: Sequence[PlannedBlock], client: PrefectClient | None = None
) -> list[tuple[PlannedBlock, Outcome]]:
    """Register the block types, then create or update each block; unchanged ones are left as
    they are. Returns what happened to each."""
    if client is None:
        async with get_client() as owned:
            return await apply(planned, owned)
    await register_block_types(client)
    results: list[tuple[PlannedBlock, Outcome]] = []
    for item in planned:
        existing = await _existing(item, client)
        if existing is not None and _same(existing, item.block):
            results.append((item, "unchanged"))
            continue
        await item.block.asave(item.name, overwrite=True, client=client)
        results.append((item, "created" if existing is None else "updated"))
    return results
