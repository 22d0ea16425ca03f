"""The results file: appended a line per conversation, read back in the run's order."""

from __future__ import annotations

from prefect_sessions.conversation.results import ConversationResult, ResultStore


def test_a_chunk_that_finishes_nothing_leaves_no_file(tmp_path):
    store = ResultStore(tmp_path / "suite" / "k.jsonl")
    with store.appending():
        pass  # the provider was down: no verdict
    assert not store.path.exists()
    with store.appending():
        store.append(ConversationResult(id="a", status="passed"))
        store.append(ConversationResult(id="b", status="failed"))
    store.append(ConversationResult(id="c", status="passed"))  # after the block: opened anew
    assert [r.id for r in store] == ["a", "b", "c"]


def test_in_order_reads_the_latest_of_each_run_by_its_place(tmp_path):
    store = ResultStore(tmp_path / "k.jsonl")
    for id_, status, position in [("b", "errored", 1), ("a", "passed", 0), ("b", "passed", 1)]:
        store.append(ConversationResult(id=id_, status=status, position=position))
    assert [(r.id, r.status) for r in store.in_order()] == [("a", "passed"), ("b", "passed")]
    assert list(ResultStore(tmp_path / "none.jsonl").in_order()) == []
