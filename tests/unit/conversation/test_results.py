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


def test_finished_reads_each_whole_line_and_no_cut_one(tmp_path):
    """A resumed run reads the head of each line; a line a kill cut, and the line appended
    after it (joined to it), count as not finished, as JSON would read them."""
    store = ResultStore(tmp_path / "k.jsonl")
    store.append(ConversationResult(id='quote "q" \\ é', status="passed", fingerprint="v2:a"))
    store.append(ConversationResult(id="r", status="failed", repeats=2, repetition=2))
    store.append(ConversationResult(id="e", status="passed", fingerprint="v2:e"))
    store.append(ConversationResult(id="e", status="errored"))  # errored after: not finished
    nested = {"record": {"id": "x", "fingerprint": "v2:nested"}}
    store.append(ConversationResult(id="n", status="passed", outputs=nested, fingerprint="f"))
    cut = ConversationResult(id="cut", status="passed").model_dump_json()
    with store.path.open("a", encoding="utf-8") as handle:
        handle.write(cut[: len(cut) // 2])  # killed mid-write
    store.append(ConversationResult(id="after", status="passed"))  # joins the cut line
    store.append(ConversationResult(id="last", status="passed"))
    with store.path.open("a", encoding="utf-8") as handle:
        handle.write('{"id": "spaced", "status": "passed", "fingerprint": "old"}\n')  # by hand
    assert store.finished() == {
        'quote "q" \\ é': "v2:a",
        "r#2": "",
        "n": "f",
        "last": "",
        "spaced": "old",
    }
