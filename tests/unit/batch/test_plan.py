"""What a resumed run has left: counted in one pass over the suite when little is left, and
never a conversation that an earlier attempt finished (the same one, by its fingerprint). The
counting pass templates only what is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefect_sessions.batch import chunks
from prefect_sessions.batch.chunks import WHOLE_SUITE, Share, _Plan
from prefect_sessions.conversation import dataset
from prefect_sessions.conversation.dataset import iter_planned, iter_runs
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
    """The passes a plan makes over the suite."""
    counted: list[int] = []

    def counting(loaded):
        counted.append(1)
        return iter_planned(loaded)

    monkeypatch.setattr(chunks, "iter_planned", counting)
    return counted


@pytest.fixture
def templated(monkeypatch) -> list[str]:
    """The conversations whose turns were templated, by id."""
    made: list[str] = []
    real = dataset._expand

    def counting(parts, conversation_id, *args, **kwargs):
        made.append(conversation_id)
        return real(parts, conversation_id, *args, **kwargs)

    monkeypatch.setattr(dataset, "_expand", counting)
    return made


def finish(store: ResultStore, loaded, keep: set[str], changed: str | None = None) -> None:
    for conversation in iter_runs(loaded):
        if conversation.id in keep:
            fingerprint = "v2:other" if conversation.id == changed else conversation.fingerprint
            store.append(
                ConversationResult(id=conversation.id, status="passed", fingerprint=fingerprint)
            )


def test_a_resume_with_little_left_expands_the_suite_once(tmp_path, loaded, expansions, templated):
    store = ResultStore(tmp_path / "results.jsonl")
    finish(store, loaded, {f"c-{n}" for n in range(8)}, changed="c-3")
    templated.clear()
    plan = _Plan.of(loaded, WHOLE_SUITE, store)
    assert (plan.total, plan.resumed) == (10, 7)
    assert [c.id for c in plan.to_run] == ["c-3", "c-8", "c-9"]  # c-3 changed since
    assert len(expansions) == 1
    assert templated == ["c-3", "c-8", "c-9"]  # nothing that is done


def test_a_run_an_earlier_version_started_resumes_by_its_fingerprints(tmp_path, loaded):
    """Results files written before fingerprints of spec and row hold the fingerprint of the
    templated turns: what they finished is not run again."""
    store = ResultStore(tmp_path / "results.jsonl")
    for conversation in iter_runs(loaded):
        if conversation.id in {"c-0", "c-1"}:
            legacy = conversation.legacy_fingerprint
            assert not legacy.startswith(dataset.FINGERPRINT_PREFIX)
            store.append(
                ConversationResult(id=conversation.id, status="passed", fingerprint=legacy)
            )
    store.append(ConversationResult(id="c-2", status="passed", fingerprint="v2:changed"))
    plan = _Plan.of(loaded, WHOLE_SUITE, store)
    assert plan.resumed == 2
    assert [c.id for c in plan.to_run][:2] == ["c-2", "c-3"]


def test_the_fingerprint_is_the_spec_and_the_row(tmp_path, loaded):
    """The same spec and row give the same fingerprint, planned or templated; a changed turn
    or row gives another."""
    planned = {p.key: p.fingerprint for p in iter_planned(loaded)}
    made = {c.key: c.fingerprint for c in iter_runs(loaded)}
    assert planned == made
    assert len(set(made.values())) == 10
    (tmp_path / "suite.yaml").write_text(SUITE.replace('"hi {{ row.n }}"', '"hey {{ row.n }}"'))
    changed = load_suite(tmp_path / "suite.yaml", environ=ENV)
    assert not set(made.values()) & {c.fingerprint for c in iter_runs(changed)}


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


def test_the_runs_of_a_repeated_conversation_template_it_once(tmp_path, templated):
    (tmp_path / "rows.csv").write_text("n\n1\n2\n")
    (tmp_path / "suite.yaml").write_text(SUITE + "    repeat: 3\n")
    repeated = load_suite(tmp_path / "suite.yaml", environ=ENV)
    templated.clear()  # loading checks each conversation once
    runs = list(iter_runs(repeated))
    assert [(c.id, c.repetition, c.position) for c in runs] == [
        ("c-1", 1, 0),
        ("c-1", 2, 1),
        ("c-1", 3, 2),
        ("c-2", 1, 3),
        ("c-2", 2, 4),
        ("c-2", 3, 5),
    ]
    assert templated == ["c-1", "c-2"]
