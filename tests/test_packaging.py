"""The package installs as a typed Prefect collection."""

from __future__ import annotations

from importlib.metadata import entry_points, version
from importlib.resources import files

import prefect_sessions


def test_registered_under_the_prefect_collections_entry_point():
    found = [
        ep for ep in entry_points(group="prefect.collections") if ep.name == "prefect_sessions"
    ]
    assert [ep.value for ep in found] == ["prefect_sessions"]
    assert found[0].load() is prefect_sessions


def test_prefect_discovers_the_collection():
    from prefect.plugins import load_prefect_collections

    assert "prefect_sessions" in load_prefect_collections()


def test_typed_and_versioned():
    assert (files("prefect_sessions") / "py.typed").is_file()
    assert version("prefect-sessions") == prefect_sessions.__version__
