"""A task pair works from sync and async flows on a real Prefect server."""

from __future__ import annotations

import asyncio

import pytest
from prefect import flow
from prefect.utilities.callables import parameter_schema

from prefect_sessions.task_pairs import task_pair


async def _double(value: int) -> int:
    """Double a number, asynchronously."""
    await asyncio.sleep(0)
    return value * 2


adouble, double = task_pair(_double, name="double")


@pytest.mark.usefixtures("prefect_server")
def test_the_sync_task_runs_in_a_sync_flow():
    @flow
    def sync_flow() -> int:
        return double(21)

    assert sync_flow() == 42


@pytest.mark.usefixtures("prefect_server")
async def test_the_async_task_runs_in_an_async_flow_and_so_does_the_sync_twin():
    @flow
    async def async_flow() -> tuple[int, int]:
        return await adouble(5), double(6)

    assert await async_flow() == (10, 12)


def test_both_tasks_keep_the_signature_and_docs():
    assert adouble.name == double.name == "double"
    assert double.description == adouble.description == "Double a number, asynchronously."
    assert list(parameter_schema(double.fn).properties) == ["value"]
    assert parameter_schema(double.fn).properties["value"]["type"] == "integer"
