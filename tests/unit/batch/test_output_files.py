"""The output dataset: the latest result of each conversation run, in the input's order, in the
format the extension names."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from prefect_sessions.batch.output_files import check_output_path, write_output_dataset
from prefect_sessions.conversation.results import ConversationResult, ResultStore
from prefect_sessions.errors import ConfigurationError


def _results(path: Path) -> Path:
    store = ResultStore(path)
    rows = [("b", 1, "errored"), ("a", 0, "passed"), ("c", 2, "passed"), ("b", 1, "passed")]
    for id_, position, status in rows:  # completion order; b errored first, then passed
        store.append(
            ConversationResult(
                id=id_,
                status=status,
                position=position,
                row={"user": id_, "n": position},
                outputs={"answer": f"hi {id_}", "amount": 1.5 * position, "n_ok": position > 0},
                output_notes={} if status == "passed" else {"answer": "the agent gave no reply"},
            )
        )
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"id": "d", "status": "pass')  # a line a killed run cut
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_one_row_per_conversation_run_in_the_input_order(tmp_path: Path, suffix: str):
    results = _results(tmp_path / "run.jsonl")
    target = tmp_path / f"out{suffix}"
    written = write_output_dataset(results, target)
    assert (written.rows, written.path) == (3, target.resolve())
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    elif suffix == ".csv":
        with target.open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(target)
        assert str(table.schema.field("amount").type) == "double"
        assert str(table.schema.field("n_ok").type) == "bool"
        rows = table.to_pylist()
    assert [row["conversation"] for row in rows] == ["a", "b", "c"]
    assert [row["status"] for row in rows] == ["passed", "passed", "passed"]  # b's latest
    assert list(rows[0])[:3] == ["user", "n", "answer"]
    assert not (tmp_path / f"out{suffix}.partial").exists()


def test_writing_again_replaces_the_file_never_doubling_a_row(tmp_path: Path):
    results = _results(tmp_path / "run.jsonl")
    target = tmp_path / "out.jsonl"
    write_output_dataset(results, target)
    assert write_output_dataset(results, target).rows == 3
    assert len(target.read_text(encoding="utf-8").splitlines()) == 3


def test_an_output_that_cannot_be_written_is_named_with_its_fix(tmp_path: Path):
    with pytest.raises(ConfigurationError, match=r"write a \.csv, \.jsonl or \.parquet file"):
        check_output_path(tmp_path / "out.xlsx")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(ConfigurationError, match="is a folder: name a file"):
        check_output_path(tmp_path / "folder.csv")
