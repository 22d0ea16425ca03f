"""One run's options, in one typed, frozen model.

A run's options enter in three places: the command line (``prefect-sessions run``), a flow's
parameters (the UI's form, a deployment, a trigger) and Python (the pipeline step). Each builds a
:class:`RunOptions` once, which validates every option, and passes it whole down to the shards and
the chunks; nothing below re-reads or re-validates them.

The flows keep one typed parameter per option, so the UI's run form shows typed fields with their
bounds; the bounds are the annotated types below, shared by the form and this model.

This module imports no Prefect: the command line validates its options before loading it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prefect_sessions.conversation.budget import Budget
from prefect_sessions.conversation.selection import Selection, selection_of
from prefect_sessions.conversation.suite import TAG_PATTERN

if TYPE_CHECKING:
    from prefect_sessions.credentials import ProviderCredentials

    Credentials = ProviderCredentials
else:
    Credentials = Any  # checked by RunOptions._a_block; the base class loads Prefect

#: When a run ends Failed in Prefect (and the CLI exits 1): any conversation that did not pass;
#: only regressions against the baseline (newly failing, or added and failing); or never.
FailOn = Literal["any", "regressions", "never"]
#: ``baseline`` values: the latest earlier run of the suite, or no comparison at all.
LAST, NO_BASELINE = "last", "none"
#: Where each run's results file (JSONL) is kept.
DEFAULT_RESULTS_DIR = ".prefect-sessions/runs"
#: The deployment every shard runs as (``flow name/deployment name``), see ``prefect.yaml``.
SHARD_DEPLOYMENT = "batch-conversations-shard/shard"
#: More shards than this is a typo, not a plan (each shard is a flow run on a worker).
MAX_SHARDS = 64
#: Conversations per Prefect task run.
DEFAULT_CHUNK_SIZE = 100

# The bounds of each option, shared by this model and the flows' typed parameters (the UI form).
#: Conversations in flight at once.
Concurrency = Annotated[int, Field(ge=1, le=1000)]
#: Requests per second to stay under.
Rate = Annotated[float, Field(gt=0)]
#: The share of the key's limit a run may use.
MaxShare = Annotated[float, Field(gt=0, le=1)]
#: Conversations per Prefect task run.
ChunkSize = Annotated[int, Field(ge=1, le=10_000)]
#: How many shares a suite is cut into.
Shards = Annotated[int, Field(ge=1, le=MAX_SHARDS)]
#: A conversation tag to select by (a run takes conversations with any of the given tags).
Tag = Annotated[str, Field(pattern=TAG_PATTERN)]
#: A glob on conversation ids (``refund-*``).
IdGlob = Annotated[str, Field(min_length=1, max_length=200)]
#: A run key (a new run's name, an earlier run to compare with or rerun the failures of).
RunKey = Annotated[str, Field(min_length=1, max_length=200)]
#: Where requests go instead of the provider's own address.
BaseUrl = Annotated[str, Field(pattern=r"^https?://[^/\s]+")]


class RunOptions(BaseModel):
    """Everything a batch run of a suite is told, validated once.

    ``None`` means "not given": the suite's own setting (concurrency, max share), or what the run
    finds out (the rate). Build one with :meth:`of`, which drops the ``None`` a flow or the command
    line passes for an option left empty.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    suite_path: str = Field(min_length=1, description="The suite file (YAML).")
    run_key: RunKey | None = Field(default=None, description="The run's name; resumes it.")
    base_url: BaseUrl | None = None
    concurrency: Concurrency | None = None
    rate: Rate | None = None
    max_share: MaxShare | None = None
    credentials: Credentials | None = Field(
        default=None, description="A credentials block instead of the suite's connection."
    )
    results_dir: str = DEFAULT_RESULTS_DIR
    chunk_size: ChunkSize = DEFAULT_CHUNK_SIZE
    shards: Shards = 1
    shard_deployment: str | None = SHARD_DEPLOYMENT
    fail_on: FailOn = "any"
    baseline: RunKey | None = LAST
    tags: tuple[Tag, ...] = ()
    ids: tuple[IdGlob, ...] = ()
    only_failed: RunKey | None = Field(
        default=None, description="Rerun only what failed or errored in this run."
    )
    only: frozenset[str] | None = Field(
        default=None,
        description="Exact conversation ids to take (a shard of a rerun of failures).",
    )
    output_path: str | None = Field(
        default=None, description="Write the output dataset here (.csv, .jsonl or .parquet)."
    )
    budget: Budget | None = Field(
        default=None, description="Caps on what the run spends, over the suite's."
    )
    judge_cache: bool = Field(
        default=True,
        description="Reuse a judge's answer to the same question in the same repetition.",
    )

    @field_validator("tags", "ids", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return () if value is None else value

    @field_validator("credentials")
    @classmethod
    def _a_block(cls, value: object) -> object:
        if value is None:
            return value
        from prefect_sessions.credentials import ProviderCredentials  # a block means Prefect

        if not isinstance(value, ProviderCredentials):
            raise ValueError(
                f"credentials must be a provider's credentials block, not {type(value).__name__}"
            )
        return value

    @classmethod
    def of(cls, **given: Any) -> RunOptions:
        """The options from keyword arguments as the command line holds them: ``None`` for an
        option not given (a flow's parameters, where ``None`` can mean something, such as no
        baseline, go to ``model_validate`` whole).

        Raises:
            pydantic.ValidationError: naming each option that is out of bounds
                (:func:`invalid_options` says it in one line).
        """
        return cls.model_validate(
            {name: value for name, value in given.items() if value is not None}
        )

    def keyed(self, run_key: str) -> RunOptions:
        """These options for the run named ``run_key``."""
        return self.model_copy(update={"run_key": run_key})

    @property
    def key(self) -> str:
        """The run key (a run's options always get one before the run starts)."""
        if self.run_key is None:
            raise ValueError("these options have no run key yet: use keyed()")
        return self.run_key

    def selection(self, only_from: str = "") -> Selection:
        """The conversations the run takes (``only`` as resolved from ``only_failed``)."""
        return selection_of(self.tags or None, self.ids or None, self.only, only_from=only_from)

    def concurrency_for(self, suite_concurrency: int) -> int:
        """Conversations in flight: the option, else the suite's."""
        return max(1, self.concurrency or suite_concurrency)

    def flow_parameters(self) -> dict[str, Any]:
        """These options as the batch flow's parameters (the credentials apart)."""
        return self._parameters(exclude={"credentials", "only"})

    def shard_parameters(self) -> dict[str, Any]:
        """What every shard's flow run is given (its index, count and credentials apart): the
        options that shape how a share runs, each shard with its part of the budget."""
        shard = self
        if self.budget is not None:
            shard = self.model_copy(update={"budget": self.budget.shared(self.shards)})
        return shard._parameters(include=set(_SHARD_OPTIONS))

    def _parameters(
        self, *, include: set[str] | None = None, exclude: set[str] | None = None
    ) -> dict[str, Any]:
        """Options as JSON-ready flow parameters, leaving out those at their default (the flow
        has the same defaults)."""
        given = self.model_dump(include=include, exclude=exclude, exclude_defaults=True)
        return {
            name: sorted(value)
            if isinstance(value, frozenset | set)
            else list(value)
            if isinstance(value, tuple)
            else value
            for name, value in given.items()
        }


#: The options a shard's flow takes (``flows/batch_conversations_shard.py``).
_SHARD_OPTIONS = (
    "budget",
    "suite_path",
    "run_key",
    "base_url",
    "concurrency",
    "rate",
    "max_share",
    "results_dir",
    "chunk_size",
    "tags",
    "ids",
    "only",
    "judge_cache",
)


def invalid_options(error: ValidationError) -> str:
    """A validation error of :class:`RunOptions` in one line: each option and what it must be."""
    problems = []
    for problem in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in problem["loc"]) or "options"
        problems.append(f"{where}: {problem['msg']}")
    return "; ".join(problems)


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_RESULTS_DIR",
    "LAST",
    "MAX_SHARDS",
    "NO_BASELINE",
    "SHARD_DEPLOYMENT",
    "BaseUrl",
    "ChunkSize",
    "Concurrency",
    "FailOn",
    "IdGlob",
    "MaxShare",
    "Rate",
    "RunKey",
    "RunOptions",
    "Shards",
    "Tag",
    "invalid_options",
]
