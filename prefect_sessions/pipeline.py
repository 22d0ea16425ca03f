"""Conversations as a pipeline step: rows in memory in, what the agent said out, as data.

One call, usable inside any flow of yours::

    from prefect import flow
    from prefect_sessions.pipeline import aconverse_rows
    from prefect_sessions.vectara import VectaraCredentials

    @flow
    async def nightly_tickets(tickets: list[dict]):
        credentials = await VectaraCredentials.aload("support-agent")
        rows = await aconverse_rows(
            tickets,
            {
                "id": "ticket-{{ row.id }}",
                "connection": {"agent_key": "agt_triage"},
                "turns": [{"text": "{{ row.body }}"}],
                "outputs": {"draft": {"reply": "last"}, "category": {"structured": "$.category"}},
            },
            credentials,
            run_key="tickets-2026-12-07",
        )
        return rows.to_pandas()

It runs the same batch as ``prefect-sessions run`` (the same chunk tasks, pacing, circuit
breaker, resume, Redis and shards), not a second path: the rows become a dataset and the script
a suite, written under ``results_dir/<name>/`` as ``<run key>.rows.jsonl`` and
``<run key>.suite.yaml``. That is where the rows live while the run goes, and how a resumed run
(the same ``run_key``) finds them: it writes them again, and every conversation whose row and
script are unchanged is not run twice. The results file next to them keeps every conversation's
outcome as it finishes; the rows returned are read from it, the latest of each run, in the input's
order (without transcripts, so 100,000 rows cost no more than their outputs).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prefect_sessions.batch.chunks import WHOLE_SUITE, new_run_key, results_file, slug
from prefect_sessions.batch.report import RunSummary
from prefect_sessions.batch.run import run_batch
from prefect_sessions.conversation.budget import Budget
from prefect_sessions.conversation.outputs import RESERVED_COLUMNS, Output
from prefect_sessions.conversation.results import ResultStore
from prefect_sessions.errors import ConfigurationError
from prefect_sessions.llm.connection import ModelConnection
from prefect_sessions.providers import provider_of
from prefect_sessions.run_options import (
    DEFAULT_RESULTS_DIR,
    FailOn,
    RunOptions,
    invalid_options,
)
from prefect_sessions.seam.judged import SimulateSpec
from prefect_sessions.seam.turns import Expectation, Turn

if TYPE_CHECKING:
    from prefect_sessions.credentials import ProviderCredentials


class ConversationScript(BaseModel):
    """The conversation every row goes through: what a suite's conversation holds, with the row
    as ``row`` in its templates.

    Attributes:
        name: the run's name (its results folder and its Prefect artifacts).
        id: each conversation's id, a template over the row (unique per row).
        connection: the provider's fields (Vectara's ``agent_key``, Voiceflow's ``project_id``);
            the key and the URL come from the credentials block.
        turns, variables, tags, outputs: as in a suite file.
        expect, simulate: judged expectations on the whole conversation, and a simulated user,
            as in a suite file (with ``judge_model``, and ``embeddings`` for ``similar``).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="pipeline", min_length=1, max_length=200)
    id: str = Field(default="{{ row.id }}", min_length=1, max_length=200)
    connection: dict[str, Any] = Field(default_factory=dict)
    turns: list[Turn] = Field(default_factory=list)
    expect: list[Expectation] = Field(default_factory=list)
    simulate: SimulateSpec | None = None
    judge_model: ModelConnection | None = None
    embeddings: Literal["offline", "judge_model"] = "offline"
    variables: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    outputs: dict[str, Output] = Field(default_factory=dict)
    cleanup: bool = False
    budget: Budget | None = None


class OutputRow(BaseModel):
    """One conversation run's row: its input row, its outputs, its verdict."""

    model_config = ConfigDict(frozen=True)

    conversation: str = Field(description="Which run of which conversation (``id``, ``id#2``).")
    status: str = Field(description="passed, failed or errored.")
    reason: str | None = None
    row: dict[str, Any] = Field(default_factory=dict, description="The input row.")
    outputs: dict[str, Any] = Field(default_factory=dict, description="The named outputs.")
    output_notes: str | None = Field(default=None, description="Why an output is missing.")

    def flat(self) -> dict[str, Any]:
        """The row as the output dataset has it: input columns, outputs, then the verdict."""
        return {
            **self.row,
            **self.outputs,
            "conversation": self.conversation,
            "status": self.status,
            "reason": self.reason,
            "output_notes": self.output_notes,
        }


class OutputRows(Sequence[OutputRow]):
    """The output rows of a step, in the input's order, with the run's summary."""

    def __init__(self, rows: list[OutputRow], summary: RunSummary) -> None:
        self._rows = rows
        self.summary = summary

    @overload
    def __getitem__(self, index: int) -> OutputRow: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[OutputRow]: ...

    def __getitem__(self, index: int | slice) -> OutputRow | Sequence[OutputRow]:
        return self._rows[index]

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[OutputRow]:
        return iter(self._rows)

    def records(self) -> list[dict[str, Any]]:
        """Every row as a flat dict (input columns, outputs, verdict)."""
        return [row.flat() for row in self._rows]

    def to_pandas(self) -> Any:
        """A pandas DataFrame (``pip install 'prefect-sessions[pandas]'``)."""
        try:
            import pandas
        except ImportError:
            raise ConfigurationError(
                "to_pandas needs pandas: pip install 'prefect-sessions[pandas]'"
            ) from None
        return pandas.DataFrame.from_records(self.records())

    def to_arrow(self) -> Any:
        """A pyarrow Table (``pip install 'prefect-sessions[parquet]'``)."""
        try:
            import pyarrow
        except ImportError:
            raise ConfigurationError(
                "to_arrow needs pyarrow: pip install 'prefect-sessions[parquet]'"
            ) from None
        return pyarrow.Table.from_pylist(self.records())


def _as_rows(rows: Any) -> list[dict[str, Any]]:
    """Rows as dicts, from a list of mappings, a pandas DataFrame or a pyarrow Table."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a pandas DataFrame
        return [dict(row) for row in rows.to_dict(orient="records")]
    if hasattr(rows, "to_pylist") and hasattr(rows, "schema"):  # a pyarrow Table
        return [dict(row) for row in rows.to_pylist()]
    listed = list(rows)
    for number, row in enumerate(listed):
        if not isinstance(row, Mapping):
            raise ConfigurationError(
                f"rows: row {number} is a {type(row).__name__}, not a mapping: pass dicts, a "
                "pandas DataFrame or a pyarrow Table"
            )
    return [dict(row) for row in listed]


_ROW_COLUMN = re.compile(r"\{\{\s*row\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _check_rows(rows: list[dict[str, Any]], script: ConversationScript) -> None:
    """What the run would refuse anyway, said in the step's words before anything is written."""
    if not rows:
        raise ConfigurationError("rows: there are none: pass at least one row")
    read = set(_ROW_COLUMN.findall(script.id))
    if len(read) == 1:  # ids made from one column: its duplicates are duplicate ids
        (column,) = read
        seen: dict[str, int] = {}
        for number, row in enumerate(rows):
            if column not in row:
                raise ConfigurationError(
                    f"rows: row {number} has no column {column!r}, which the script's id "
                    f"{script.id!r} reads: add it, or set the script's id to another column"
                )
            value = str(row[column])
            if value in seen:
                raise ConfigurationError(
                    f"rows: {column} {value!r} appears twice (rows {seen[value]} and {number}): "
                    "give each row a unique id, or set the script's id to a template that is"
                )
            seen[value] = number
    columns = set().union(*(row.keys() for row in rows))
    clashing = sorted(columns & (set(script.outputs) | set(RESERVED_COLUMNS)))
    if clashing:
        raise ConfigurationError(
            f"rows: the column {clashing[0]!r} clashes with an output or a column every output "
            f"row has ({', '.join(RESERVED_COLUMNS)}): rename the output or the column"
        )


def _write(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _spool(
    rows: list[dict[str, Any]], script: ConversationScript, provider: str, folder: Path, key: str
) -> Path:
    """Write the rows as a JSONL dataset and the script as a suite beside it; the suite's path."""
    folder.mkdir(parents=True, exist_ok=True)
    dataset = folder / f"{slug(key)}.rows.jsonl"
    lines = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
    _write(dataset, lines)
    conversation: dict[str, Any] = {
        "id": script.id,
        "dataset": dataset.name,
        "turns": [turn.model_dump(mode="json", by_alias=True) for turn in script.turns],
    }
    if script.variables:
        conversation["variables"] = script.variables
    if script.tags:
        conversation["tags"] = script.tags
    if script.expect:
        conversation["expect"] = [e.model_dump(mode="json") for e in script.expect]
    if script.simulate is not None:
        conversation["simulate"] = script.simulate.model_dump(mode="json")
    suite: dict[str, Any] = {
        "name": script.name,
        "provider": provider,
        "connection": dict(script.connection),
        "cleanup": script.cleanup,
        "conversations": [conversation],
    }
    if script.outputs:
        suite["outputs"] = {name: _output_spec(output) for name, output in script.outputs.items()}
    if script.budget is not None:
        suite["budget"] = script.budget.model_dump(exclude_none=True)
    if script.judge_model is not None:
        suite["judge_model"] = script.judge_model.model_dump(mode="json", exclude_none=True)
        suite["embeddings"] = script.embeddings
    path = folder / f"{slug(key)}.suite.yaml"
    _write(path, yaml.safe_dump(suite, sort_keys=False, allow_unicode=True))
    return path


def _output_spec(output: Output) -> dict[str, Any]:
    spec: dict[str, Any] = {output.kind: output.value}
    if output.kind == "regex":
        spec["group"] = output.group
    return spec


def _turn_spec_check(script: ConversationScript) -> None:
    # A turn written back must read the same (a turn's YAML is its kind key and its expect).
    for turn in script.turns:
        Turn.model_validate(turn.model_dump(mode="json", by_alias=True))


async def aconverse_rows(
    rows: Iterable[Mapping[str, Any]] | Any,
    script: ConversationScript | Mapping[str, Any],
    credentials: ProviderCredentials,
    *,
    run_key: str | None = None,
    concurrency: int | None = None,
    rate: float | None = None,
    max_share: float | None = None,
    chunk_size: int | None = None,
    shards: int = 1,
    shard_deployment: str | None = None,
    results_dir: str = DEFAULT_RESULTS_DIR,
    output_path: str | None = None,
    budget: Budget | Mapping[str, float] | None = None,
    fail_on: FailOn = "never",
) -> OutputRows:
    """Take every row through a conversation with the agent of ``credentials``; the output rows.

    Args:
        rows: dicts, a pandas DataFrame or a pyarrow Table; each is one conversation.
        script: the conversation (:class:`ConversationScript`, or a mapping of its fields).
        credentials: a provider's credentials block (it decides the provider).
        run_key: the run's name; the same key resumes it (nothing finished runs twice).
        concurrency, rate, max_share, chunk_size: as for ``prefect-sessions run``.
        shards: above 1, shares on this flow's task runner (``shard_deployment`` None) or as
            runs of a shard deployment.
        results_dir: where the rows, the suite and the results are kept while the run goes.
        output_path: also write the output dataset here (.csv, .jsonl or .parquet).
        budget: caps on what the run spends (requests, credits, session_minutes, tokens).
        fail_on: ``never`` (the default: a data step hands on every row, with its status),
            ``any`` or ``regressions``.

    Returns:
        The output rows in the input's order (with ``repeat``, each run of a row).

    Raises:
        ConfigurationError: bad input (one line naming it), before any request.
        RunStoppedError: the run stopped (a provider or the budget); what finished is kept, and
            the same ``run_key`` resumes it.
    """
    try:
        chosen = (
            script
            if isinstance(script, ConversationScript)
            else ConversationScript.model_validate(script)
        )
    except ValidationError as exc:
        raise ConfigurationError(f"script: {invalid_options(exc)}") from None
    _turn_spec_check(chosen)
    listed = _as_rows(rows)
    _check_rows(listed, chosen)
    provider = provider_of(credentials).name
    key = run_key or new_run_key()
    folder = Path(results_dir) / slug(chosen.name)
    suite_path = await asyncio.to_thread(_spool, listed, chosen, provider, folder, key)
    given = {
        "concurrency": concurrency,
        "rate": rate,
        "max_share": max_share,
        "chunk_size": chunk_size,
        "output_path": output_path,
        "budget": budget,
    }
    try:
        options = RunOptions.model_validate(
            {
                "suite_path": str(suite_path),
                "run_key": key,
                "credentials": credentials,
                "shards": shards,
                # No deployment by default: a step's shares run on its flow's task runner.
                "shard_deployment": shard_deployment,
                "results_dir": results_dir,
                "fail_on": fail_on,
                "baseline": None,
                **{name: value for name, value in given.items() if value is not None},
            }
        )
    except ValidationError as exc:
        raise ConfigurationError(invalid_options(exc)) from None
    ended: Any = await run_batch(options)
    if not isinstance(ended, RunSummary):  # a Failed state: the cause is kept in it
        outcome = await ended.aresult(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            raise outcome
        summary = RunSummary.model_validate(outcome)
    else:
        summary = ended
    results = results_file(results_dir, chosen.name, key, WHOLE_SUITE)
    found = await asyncio.to_thread(_read_rows, results)
    return OutputRows(found, summary)


def _read_rows(results: Path) -> list[OutputRow]:
    """The output rows, without the transcripts the results file also holds."""
    return [
        OutputRow(
            conversation=result.key,
            status=result.status,
            reason=result.reason,
            row=result.row,
            outputs=result.outputs,
            output_notes=result.output_row()["output_notes"],
        )
        for result in ResultStore(results).in_order()
    ]


def converse_rows(
    rows: Iterable[Mapping[str, Any]] | Any,
    script: ConversationScript | Mapping[str, Any],
    credentials: ProviderCredentials,
    **options: Any,
) -> OutputRows:
    """:func:`aconverse_rows` for synchronous flows and scripts."""
    return asyncio.run(aconverse_rows(rows, script, credentials, **options))


__all__ = [
    "ConversationScript",
    "OutputRow",
    "OutputRows",
    "aconverse_rows",
    "converse_rows",
]
