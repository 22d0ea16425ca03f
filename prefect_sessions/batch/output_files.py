"""The output dataset: one row per conversation run, for the next step of a pipeline.

Each row holds the input row's columns, the named outputs
(:mod:`prefect_sessions.conversation.outputs`), ``conversation`` (which run of which conversation),
``status``, ``reason`` and ``output_notes`` (why an output is missing). The format follows the
file's extension: ``.csv``, ``.jsonl`` or ``.parquet`` (with the ``parquet`` extra: pyarrow).

Rows are kept as conversations finish, in the run's results file (the resumable spool every
conversation's outcome is appended to); the dataset is written from it when the run ends, or
stops: the latest result of each conversation run, in the input's order, streamed with only an
index in memory (so 100,000 rows cost the same memory as 1,000), into a temporary file that
replaces the target whole. A resumed run (the same run key) writes the dataset again with one row
per conversation run, never a duplicate.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_sessions.conversation.results import ResultStore
from prefect_sessions.errors import ConfigurationError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
#: Rows per Parquet row group, and per batch converted to Arrow.
PARQUET_BATCH = 5_000


def output_format(path: str | Path) -> str:
    """The format a path's extension names.

    Raises:
        ConfigurationError: an extension no writer takes.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigurationError(
            f"output {path}: write a .csv, .jsonl or .parquet file (the extension chooses the "
            "format)"
        )
    return FORMATS[suffix]


def check_output_path(path: str | Path) -> None:
    """Refuse, before any request, an output the run could not write at its end.

    Raises:
        ConfigurationError: one line naming the path and the fix (an extension no writer takes,
            a folder that cannot be made or written to, Parquet without pyarrow).
    """
    target = Path(path)
    if output_format(target) == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                f"output {path}: Parquet needs pyarrow: pip install 'prefect-sessions[parquet]', "
                "or write .csv or .jsonl"
            ) from None
    if target.is_dir():
        raise ConfigurationError(f"output {path} is a folder: name a file, e.g. {path}/rows.csv")
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"output {path}: the folder {folder} cannot be made ({exc.strerror}): choose another"
        ) from None
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ConfigurationError(
            f"output {path} cannot be written (permission denied): choose a writable place"
        )


def output_rows(results: str | Path) -> Iterator[dict[str, Any]]:
    """The output rows of a results file, in the run's order, read one at a time."""
    for result in ResultStore(results).in_order():
        yield result.output_row()


def _columns(results: Path) -> list[str]:
    """Every column of the rows, in the order they first appear."""
    seen: dict[str, None] = {}
    for row in output_rows(results):
        seen.update(dict.fromkeys(row))
    return list(seen)


@dataclass(frozen=True)
class Written:
    """Where an output dataset was written, and how many rows it has."""

    path: Path
    rows: int


def write_output_dataset(results: str | Path, target: str | Path) -> Written:
    """Write the output dataset of a run's results file to ``target``.

    Raises:
        ConfigurationError: the format is unknown, or pyarrow is missing for Parquet.
    """
    target = Path(target)
    kind = output_format(target)
    source = Path(results)
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    if kind == "jsonl":
        count = _write_jsonl(source, partial)
    elif kind == "csv":
        count = _write_csv(source, partial)
    else:
        count = _write_parquet(source, partial)
    os.replace(partial, target)
    return Written(target.resolve(), count)


def _write_jsonl(source: Path, partial: Path) -> int:
    count = 0
    with partial.open("w", encoding="utf-8") as out:
        for row in output_rows(source):
            out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            count += 1
    return count


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def _write_csv(source: Path, partial: Path) -> int:
    columns = _columns(source)
    count = 0
    with partial.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        for row in output_rows(source):
            writer.writerow({name: _cell(row.get(name)) for name in columns})
            count += 1
    return count


def _arrow_types(source: Path) -> dict[str, str]:
    """Each column's type over every row: int64, float64, bool, or string (anything else, and
    nested values, as JSON text)."""
    kinds: dict[str, set[str]] = {}
    for row in output_rows(source):
        for name, value in row.items():
            found = kinds.setdefault(name, set())
            if value is None:
                continue
            if isinstance(value, bool):
                found.add("bool")
            elif isinstance(value, int):
                found.add("int64")
            elif isinstance(value, float):
                found.add("float64")
            else:
                found.add("string")
    chosen: dict[str, str] = {}
    for name, found in kinds.items():
        if found == {"bool"}:
            chosen[name] = "bool"
        elif found == {"int64"}:
            chosen[name] = "int64"
        elif found and found <= {"int64", "float64"}:
            chosen[name] = "float64"
        else:
            chosen[name] = "string"
    return chosen


def _arrow_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "string" and not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False, default=str)
    if kind == "float64":
        return float(value)
    return value


def _write_parquet(source: Path, partial: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = _arrow_types(source)
    arrow = {
        "bool": pa.bool_(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "string": pa.string(),
    }
    schema = pa.schema([(name, arrow[kind]) for name, kind in types.items()])
    count = 0
    with pq.ParquetWriter(partial, schema) as writer:
        batch: list[dict[str, Any]] = []
        for row in output_rows(source):
            batch.append({name: _arrow_value(row.get(name), types[name]) for name in types})
            if len(batch) == PARQUET_BATCH:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                count, batch = count + len(batch), []
        if batch or count == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
    return count


__all__ = [
    "FORMATS",
    "Written",
    "check_output_path",
    "output_format",
    "output_rows",
    "write_output_dataset",
]
