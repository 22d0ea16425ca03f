"""The progress artifact of a run: moved as chunks end, never holding one."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from prefect_sessions.batch import chunks


async def test_progress_moves_without_holding_a_chunk_and_sends_the_latest(monkeypatch):
    """A chunk's end hands its figure over and goes on; figures that arrive while one update is
    in flight are sent once, the latest; a failed update is raised by the next move."""
    sent: list[float] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def update(artifact_id, progress):
        started.set()
        await release.wait()
        sent.append(progress)

    monkeypatch.setattr(chunks, "aupdate_progress_artifact", update)
    progress = chunks._Progress(uuid4())
    progress.move(10.0)
    await started.wait()  # the first update is in flight
    for figure in (20.0, 30.0, 40.0):
        progress.move(figure)  # returns at once, though no update has ended
    release.set()
    await progress.settle()
    assert sent == [10.0, 40.0]

    async def failing(artifact_id, progress):
        raise ConnectionError("the API went away")

    monkeypatch.setattr(chunks, "aupdate_progress_artifact", failing)
    progress.move(50.0)
    with pytest.raises(ConnectionError):
        await progress.settle()
    with pytest.raises(ConnectionError):
        progress.move(60.0)
