"""What a resumed run has left: counted in one pass over the suite when little is left, and
never a conversation that an earlier attempt finished (the same one, by its fingerprint)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefect_sessions.batch import chunks
from prefect_sessions.batch.chunks import WHOLE_SUITE, Share, _Plan
from prefect_sessions.conversation.dataset import iter_runs
from prefect_sessions.conversation.results import ConversationResult, ResultStore
from prefect_sessions.conversation.suite_file import load_suite

ENV = {"VOICEFLOW_API_KEY": "k"}
SUITE = """\
name: t
provider: voiceflow
connection: {base_url: "http://127.0.0.1:1", api_key_env: VOICEFLOW_API_KEY, project_id: p}
conversations:
  - id: "c-{{ row.n }}"
    dataset: rows.csv
    turns: [{text: "hi {{ row.n }}"}]
"""


@pytest.fixture
def loaded(tmp_path: Path):
    (tmp_path / "rows.csv").write_text("n\n" + "".join(f"{n}\n" for n in range(10)))
    (tmp_path / "suite.yaml").write_text(SUITE)
    return load_suite(tmp_path / "suite.yaml", environ=ENV)


@pytest.fixture
def expansions(monkeypatch) -> list[int]:
    counted: list[int] = []

    def counting(loaded):
        counted.append(1)
        return iter_runs(loaded)

    monkeypatch.setattr(chunks, "iter_runs", counting)
    return counted


def finish(store: ResultStore, loaded, keep: set[str], changed: str | None = None) -> None:
    for conversation in iter_runs(loaded):
        if conversation.id in keep:
            fingerprint = "other" if conversation.id == changed else conversation.fingerprint
            store.append(
                ConversationResult(id=conversation.id, status="passed", fingerprint=fingerprint)
            )


def test_a_resume_with_little_left_expands_the_suite_once(tmp_path, loaded, expansions):
    store = ResultStore(tmp_path / "results.jsonl")
    finish(store, loaded, {f"c-{n}" for n in range(8)}, changed="c-3")
    plan = _Plan.of(loaded, WHOLE_SUITE, store)
    assert (plan.total, plan.resumed) == (10, 7)
    assert [c.id for c in plan.to_run] == ["c-3", "c-8", "c-9"]  # c-3 changed since
    assert len(expansions) == 1


def test_a_resume_with_much_left_takes_it_from_a_second_pass(
    tmp_path, loaded, expansions, monkeypatch
):
    monkeypatch.setattr(chunks, "HELD_FROM_COUNTING", 2)
    store = ResultStore(tmp_path / "results.jsonl")
    finish(store, loaded, {"c-0", "c-5"})
    plan = _Plan.of(loaded, Share(index=1, of=2), store)
    assert (plan.total, plan.resumed) == (5, 1)  # the odd positions; c-5 is done
    assert [c.id for c in plan.to_run] == ["c-1", "c-3", "c-7", "c-9"]
    assert len(expansions) == 2


def test_a_fresh_run_expands_the_suite_lazily(tmp_path, loaded, expansions):
    plan = _Plan.of(loaded, WHOLE_SUITE, ResultStore(tmp_path / "results.jsonl"))
    assert (plan.total, plan.resumed) == (10, 0)
    assert next(plan.to_run).id == "c-0"
    assert len(expansions) == 1
