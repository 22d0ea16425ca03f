"""The crawl's walk on a small button graph, in process: paths it cannot finish are reported
and the rest is kept; a provider without buttons is refused."""

from __future__ import annotations

from typing import Any

import pytest

from prefect_sessions.errors import ConfigurationError, ProviderUnavailableError
from prefect_sessions.recording.crawl import CrawlLimits, crawl, path_id
from prefect_sessions.recording.source import Source
from prefect_sessions.seam.adapter import ConnectionSettings
from prefect_sessions.seam.provider import ALL_TURNS, Provider
from prefect_sessions.seam.turns import Reply, Turn

#: state -> (what it says, {button: next state})
GRAPH = {
    "start": ("Hello.", {"A": "a", "B": "b"}),
    "a": ("In A.", {"Deeper": "deep", "Home": "start"}),
    "b": ("In B.", {}),
    "deep": ("Deep.", {}),
}


class GraphAdapter:
    def __init__(self, settings: ConnectionSettings, broken: str) -> None:
        self.broken = broken
        self.sessions = 0

    async def __aenter__(self) -> GraphAdapter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def start(self, conversation_id: str, variables: Any) -> dict[str, str]:
        self.sessions += 1
        return {"at": "start"}

    async def turn(self, session: dict[str, str], turn: Turn) -> Reply:
        if turn.kind == "button":
            if turn.value == self.broken:
                raise ProviderUnavailableError(provider="Graph", operation="interact")
            session["at"] = GRAPH[session["at"]][1][turn.value]
        said, buttons = GRAPH[session["at"]]
        return Reply(messages=[said], buttons=list(buttons))

    async def variables(self, session: Any) -> dict[str, Any]:
        return {}

    async def end(self, session: Any) -> None:
        return None


def _source(broken: str = "", turn_kinds: frozenset[str] = ALL_TURNS) -> Source:
    provider = Provider(
        name="graph",
        credentials="prefect_sessions.credentials:ProviderCredentials",
        adapter=lambda settings: GraphAdapter(settings, broken),  # type: ignore[arg-type]
        turn_kinds=turn_kinds,
    )
    return Source(provider, ConnectionSettings(), {"provider": "graph"})


async def test_a_path_that_fails_is_reported_and_the_others_kept():
    found = await crawl(_source(broken="Deeper"), CrawlLimits(depth=4), name="g", threshold=0.8)
    assert sorted(found.paths) == [(), ("A",), ("A", "Home"), ("B",)]
    assert found.unfinished[0][0] == ("A", "Deeper")
    assert "Graph interact failed" in found.unfinished[0][1]
    assert found.loops == 1  # Home leads back to the start
    assert path_id(("A", "Home")) in found.text


async def test_a_provider_without_buttons_is_refused():
    source = _source(turn_kinds=frozenset({"text"}))
    with pytest.raises(ConfigurationError, match="offers no buttons"):
        await crawl(source, CrawlLimits(), name="g", threshold=0.8)


def test_long_paths_keep_short_stable_ids():
    long = tuple(f"A rather long button label number {n}" for n in range(8))
    assert path_id(long) == path_id(long)
    assert len(path_id(long)) <= 120
    assert path_id(long) != path_id(long[:-1])
