"""Suite files: a named set of scripted conversations against one provider.

Loading validates everything a run needs before any request is sent: the YAML, every turn and
expectation, the turn kinds the provider supports, the connection fields and the environment
variable holding the key, every dataset row and every template. Each problem is reported with
the file, the line, the path inside the suite and how to fix it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from prefect_sessions.conversation.budget import Budget
from prefect_sessions.conversation.outputs import OUTPUT_NAME, RESERVED_COLUMNS, Output
from prefect_sessions.conversation.selection import Selection
from prefect_sessions.errors import ConfigurationError
from prefect_sessions.llm.connection import ModelConnection
from prefect_sessions.providers import get_provider
from prefect_sessions.seam.judged import SimulateSpec
from prefect_sessions.seam.turns import Expectation, Turn


class SuiteError(ConfigurationError):
    """A suite cannot run as written. ``problems`` lists each one with its location and fix."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listed = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{source} is not a valid suite:\n{listed}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.source, self.problems))


class Connection(BaseModel):
    """Inline connection settings, for local servers and CI. The key itself never appears in a
    suite: ``api_key_env`` names the environment variable that holds it."""

    model_config = ConfigDict(extra="allow")

    base_url: str | None = None
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @property
    def provider_fields(self) -> dict[str, Any]:
        """The provider-specific settings (``project_id``, ``agent_key``, ...)."""
        return dict(self.model_extra or {})


#: A tag: letters, digits, and ``-_.:/`` (what ``--tag`` and the UI form take).
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$"
Tag = Annotated[str, Field(pattern=TAG_PATTERN)]
#: How many times each conversation runs; its verdict is its pass rate against ``pass_rate``.
Repeat = Annotated[int, Field(ge=1, le=100)]
PassRate = Annotated[float, Field(ge=0, le=1)]
#: Named outputs (:mod:`prefect_sessions.conversation.outputs`), by name.
OutputName = Annotated[str, Field(pattern=OUTPUT_NAME)]


def _checked_outputs(outputs: dict[str, Output]) -> dict[str, Output]:
    clashing = [name for name in outputs if name in RESERVED_COLUMNS]
    if clashing:
        raise ValueError(
            f"output {clashing[0]!r} clashes with a column every output row has "
            f"({', '.join(RESERVED_COLUMNS)}): rename the output"
        )
    return outputs


class ConversationSpec(BaseModel):
    """One conversation, or with ``dataset`` one per row of a CSV or JSONL file."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    tags: list[Tag] = Field(
        default_factory=list,
        description="Labels to select by (--tag); a dataset row adds those of its 'tags' column.",
    )
    repeat: Repeat | None = Field(
        default=None, description="Run it this many times (default: the suite's repeat)."
    )
    pass_rate: PassRate | None = Field(
        default=None,
        description="The share of its runs that must pass (default: the suite's pass_rate).",
    )
    variables: dict[str, Any] = Field(default_factory=dict)
    dataset: str | None = None
    turns: list[Turn] = Field(
        default_factory=list,
        description="Its turns in order (with 'simulate', the scripted ones before the user's).",
    )
    expect: list[Expectation] = Field(
        default_factory=list,
        description="Judged expectations (judge, similar) on the whole conversation, at its end.",
    )
    simulate: SimulateSpec | None = Field(
        default=None, description="A model plays the user (persona, goal, facts, max_turns)."
    )
    outputs: dict[OutputName, Output] = Field(
        default_factory=dict,
        description="Named outputs taken from this conversation, besides the suite's.",
    )

    _outputs_clash = field_validator("outputs")(_checked_outputs)

    @model_validator(mode="after")
    def _turns_or_simulated(self) -> ConversationSpec:
        if not self.turns and self.simulate is None:
            raise ValueError("give 'turns' (at least one), or 'simulate' for a simulated user")
        lexical = [e.kind for e in self.expect if not e.judged]
        if lexical:
            raise ValueError(
                f"a conversation's 'expect' takes judge and similar only (got {lexical[0]!r}): "
                "put word checks on the turn they are about"
            )
        return self

    @property
    def judged(self) -> bool:
        """Whether a model or embeddings check anything of it."""
        return bool(self.expect or self.simulate) or any(t.judged for t in self.turns)


class Suite(BaseModel):
    """A suite file's contents."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    provider: str
    credentials: str | None = Field(default=None, min_length=1)
    connection: Connection | None = None
    concurrency: int = Field(default=16, ge=1, le=1000)
    max_share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Use at most this share of the key's limit (e.g. 0.5 on a production key).",
    )
    repeat: Repeat = Field(
        default=1,
        description=(
            "Run each conversation this many times: agents are not deterministic, and one run "
            "says little about how often a conversation passes."
        ),
    )
    pass_rate: PassRate = Field(
        default=1.0,
        description=(
            "A repeated conversation passes when at least this share of its runs pass (0.8: 4 "
            "of 5). Those with some passes and some failures are listed as flaky."
        ),
    )
    cleanup: bool = Field(
        default=False,
        description=(
            "Delete what each conversation leaves at the provider when it ends (a user's state, "
            "a session). Off by default: each deletion is one more request against the key's "
            "limit (a 3-turn conversation may cost 5 requests instead of 4), and every "
            "conversation starts a new session anyway."
        ),
    )
    outputs: dict[OutputName, Output] = Field(
        default_factory=dict,
        description="Named outputs taken from every conversation (a row of the output dataset).",
    )
    budget: Budget | None = Field(
        default=None,
        description="Caps on what a run spends (requests, credits, session_minutes, tokens).",
    )
    judge_model: ModelConnection | None = Field(
        default=None,
        description=(
            "The OpenAI-compatible model that judges 'judge' expectations and plays simulated "
            "users: {credentials: BLOCK} or {base_url, api_key_env, model}. Nothing is sent to a "
            "model unless it is named here."
        ),
    )
    embeddings: Literal["offline", "judge_model"] = Field(
        default="offline",
        description=(
            "What 'similar' compares with: 'offline' (wordllama, in process, the similarity "
            "extra) or 'judge_model' (the endpoint's /v1/embeddings and its embedding_model)."
        ),
    )
    conversations: list[ConversationSpec] = Field(min_length=1)

    _outputs_clash = field_validator("outputs")(_checked_outputs)

    def outputs_of(self, conversation: ConversationSpec) -> dict[str, Output]:
        """A conversation's outputs: the suite's, with its own added (and put first)."""
        return {**self.outputs, **conversation.outputs}

    @property
    def declares_outputs(self) -> bool:
        return bool(self.outputs) or any(c.outputs for c in self.conversations)

    def judged_kinds(self) -> set[str]:
        """What its conversations have judged: ``judge``, ``similar``, ``simulate``."""
        kinds: set[str] = set()
        for conversation in self.conversations:
            expectations = [
                *conversation.expect,
                *(e for t in conversation.turns for e in t.expect),
            ]
            kinds.update(e.kind for e in expectations if e.judged)
            if conversation.simulate is not None:
                kinds.add("simulate")
        return kinds

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        get_provider(value)  # raises with the list of known providers
        return value

    @model_validator(mode="after")
    def _one_way_to_connect(self) -> Suite:
        if self.credentials is None and self.connection is None:
            raise ValueError(
                "give 'credentials' (the name of a saved credentials block) or 'connection' "
                "(inline settings with api_key_env)"
            )
        # With a saved block, `connection` only adds provider fields (e.g. Vectara's agent_key);
        # the key and the URL come from the block.
        connection = self.connection
        with_block = self.credentials is not None and connection is not None
        if with_block and connection and (connection.api_key_env or connection.base_url):
            raise ValueError(
                "with 'credentials', the key and base_url come from the block: remove "
                "api_key_env and base_url from 'connection' (keep provider fields there)"
            )
        return self


class LoadedSuite(BaseModel):
    """A validated suite, where it came from (datasets are read relative to it) and which of its
    conversations this run takes."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    suite: Suite
    path: Path
    selection: Selection = Field(default_factory=Selection)
    # Counted while validating, so nobody expands the suite to count: the selected conversations,
    # and their runs (each conversation ``repeat`` times).
    conversation_count: int = 0
    run_count: int = 0

    @property
    def base_dir(self) -> Path:
        return self.path.parent


# -- locating errors in the YAML ------------------------------------------------------------------


def _node_at(node: yaml.Node | None, loc: tuple[int | str, ...]) -> yaml.Node | None:
    """The YAML node at a pydantic error location (deepest one that exists)."""
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                return node
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("kind", "value") or "[" in str(part) or part.startswith("function-"):
            continue  # pydantic-internal names, not the user's
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _problems(error: ValidationError, root: yaml.Node | None, source: str) -> list[str]:
    problems = []
    for item in error.errors():
        loc = tuple(item["loc"])
        node = _node_at(root, loc)
        where = f"{source}:{node.start_mark.line + 1}" if node is not None else source
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {_path(loc)}: {message}")
    return problems


# -- loading ---------------------------------------------------------------------------------------


def parse_suite(text: str, source: str = "<suite>") -> Suite:
    """Validate a suite's YAML text (no datasets or environment are read)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise SuiteError(source, [f"{where}: not valid YAML: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise SuiteError(source, [f"{source}: not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise SuiteError(source, [f"{source}: a suite is a mapping with name, provider, ..."])
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        raise SuiteError(source, _problems(exc, root, source)) from None
    problems = _provider_problems(suite, root, source) + _judged_problems(suite, root, source)
    if problems:
        raise SuiteError(source, problems)
    return suite


def _judged_problems(suite: Suite, root: yaml.Node | None, source: str) -> list[str]:
    """Judged expectations and simulated users without what they need, before any request."""
    kinds = suite.judged_kinds()
    problems = []
    needs_model = sorted(kinds & {"judge", "simulate"})
    if suite.embeddings == "judge_model" and "similar" in kinds:
        needs_model.append("similar (embeddings: judge_model)")
    if needs_model and suite.judge_model is None:
        problems.append(
            f"{source}: {', '.join(needs_model)} need a model: add judge_model: {{base_url: ..., "
            "api_key_env: ..., model: ...}} or judge_model: {credentials: BLOCK} to the suite"
        )
    if "similar" in kinds and suite.embeddings == "offline" and not _offline_embeddings():
        problems.append(
            f"{source}: similar: the offline embeddings need wordllama: pip install "
            "'prefect-sessions[similarity]' (or set 'embeddings: judge_model')"
        )
    if "simulate" in kinds and "text" not in get_provider(suite.provider).turn_kinds:
        for c, conversation in enumerate(suite.conversations):
            if conversation.simulate is not None:
                loc: tuple[int | str, ...] = ("conversations", c, "simulate")
                node = _node_at(root, loc)
                where = f"{source}:{node.start_mark.line + 1}" if node is not None else source
                problems.append(
                    f"{where}: {_path(loc)}: {suite.provider} takes no text turns, so no "
                    "simulated user can talk to it; script its turns instead"
                )
    return problems


def _offline_embeddings() -> bool:
    """Whether wordllama is installed (checked without importing it: validate stays quick)."""
    return importlib.util.find_spec("wordllama") is not None


def _output_problems(
    suite: Suite, kinds: frozenset[str], root: yaml.Node | None, source: str
) -> list[str]:
    """Outputs of a kind the provider cannot give (a structured output from Voiceflow)."""
    places: list[tuple[tuple[int | str, ...], dict[str, Output]]] = [(("outputs",), suite.outputs)]
    places += [
        (("conversations", c, "outputs"), conversation.outputs)
        for c, conversation in enumerate(suite.conversations)
    ]
    problems = []
    for loc, outputs in places:
        for name, output in outputs.items():
            if output.kind in kinds:
                continue
            node = _node_at(root, (*loc, name))
            where = f"{source}:{node.start_mark.line + 1}" if node is not None else source
            problems.append(
                f"{where}: {_path((*loc, name))}: {suite.provider} has no '{output.kind}' to "
                f"take an output from; use one of {', '.join(sorted(kinds))}"
            )
    return problems


def _provider_problems(suite: Suite, root: yaml.Node | None, source: str) -> list[str]:
    """Turn kinds and expectations the provider does not support, checked before any request."""
    spec = get_provider(suite.provider)
    problems = []
    for c, conversation in enumerate(suite.conversations):
        for t, turn in enumerate(conversation.turns):
            loc: tuple[int | str, ...] = ("conversations", c, "turns", t)
            node = _node_at(root, loc)
            where = f"{source}:{node.start_mark.line + 1}" if node is not None else source
            if turn.kind not in spec.turn_kinds:
                problems.append(
                    f"{where}: {_path(loc)}: {suite.provider} does not support '{turn.kind}' "
                    f"turns; use one of {', '.join(sorted(spec.turn_kinds))}"
                )
            for expectation in turn.expect:
                if expectation.kind not in spec.expectation_kinds:
                    problems.append(
                        f"{where}: {_path(loc)}: {suite.provider} cannot check "
                        f"'{expectation.kind}'; use one of "
                        f"{', '.join(sorted(spec.expectation_kinds))}"
                    )
    problems.extend(_output_problems(suite, spec.output_kinds, root, source))
    if suite.connection is not None:
        problems.extend(
            f"{source}: connection: {problem}"
            for problem in spec.connection_problems(suite.connection.provider_fields)
        )
    return problems
