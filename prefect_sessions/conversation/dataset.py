"""From suite to concrete conversations: one per spec, or one per dataset row, templated.

``{{ row.user }}`` (Jinja2, sandboxed, strict) may appear in a conversation's ``id``, its
``variables``, and any string of its turns and expectations. Conversations are produced lazily,
so a 10,000-row dataset is never held in memory at once.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import ValidationError

from prefect_sessions.conversation.outputs import Output
from prefect_sessions.conversation.results import run_key_of
from prefect_sessions.conversation.suite import (
    TAG_PATTERN,
    ConversationSpec,
    LoadedSuite,
    SuiteError,
)
from prefect_sessions.seam.judged import SimulateSpec
from prefect_sessions.seam.turns import Expectation, Turn


class _Templates(SandboxedEnvironment):
    """Jinja's sandbox, with each template's globals a plain dict: every render copies them, and
    copying Jinja's default (a ``ChainMap`` over the environment's globals) was a third of the
    time to expand a 100,000-row dataset. The globals never change once made."""

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


_jinja = _Templates(undefined=StrictUndefined, autoescape=False)

#: The longest conversation id, after templating (the same limit as an id written in a suite).
MAX_ID_LENGTH = 200


@dataclass(frozen=True)
class Conversation:
    """One conversation ready to run (with ``repeats`` above one, one of its runs)."""

    id: str
    variables: Mapping[str, Any]
    turns: tuple[Turn, ...]
    origin: str  # where it came from, for messages: "conversations[1], row 17 of users.csv"
    tags: tuple[str, ...] = ()
    repeats: int = 1
    pass_rate: float = 1.0
    #: Which of its ``repeats`` runs this is, from 1.
    repetition: int = 1
    #: The named outputs to take from it (:mod:`prefect_sessions.conversation.outputs`).
    outputs: Mapping[str, Output] = field(default_factory=dict)
    #: Its dataset row (the input columns of its output row); empty without a dataset.
    row: Mapping[str, Any] = field(default_factory=dict)
    #: Where it stands in the run's order (the output dataset keeps that order).
    position: int = 0
    #: Judged expectations on the whole conversation, checked at its end.
    expect: tuple[Expectation, ...] = ()
    #: A simulated user, who talks after the scripted turns.
    simulate: SimulateSpec | None = None
    #: The JSON text of what its spec does, before templating (see :func:`spec_text`); empty
    #: for a conversation made without a suite, whose own turns stand in for it.
    spec_text: str = field(default="", repr=False)

    @property
    def key(self) -> str:
        """What identifies this run of the conversation in a results file."""
        return run_key_of(self.id, self.repetition, self.repeats)

    @functools.cached_property
    def fingerprint(self) -> str:
        """A hash of what the conversation does, so a resumed run can tell it is the same one
        (tags and repeats select and count runs; they do not change what a run does).

        The hash of its spec's text and its row: the same spec with the same row makes the same
        conversation, so a resumed run can tell what is done without templating every turn of
        every row again (100,000 rows: under a second instead of about six). Marked ``v2:``
        beside the older form (:attr:`legacy_fingerprint`), which results files may still hold.
        """
        return _fingerprint(self.spec_text or self.legacy_body, self.row)

    @property
    def legacy_body(self) -> str:
        """``json.dumps([id, variables, [turn, ...], ...], sort_keys=True)``, written part by
        part (json.dumps joins a list's items with ``", "``): the text of a turn that every row
        shares is made once, not once per row."""
        parts = [_json(self.id), _json(dict(self.variables)), _json_list(self.turns)]
        if self.expect or self.simulate:  # so that the fingerprints of other suites stay
            parts.append(_json_list(self.expect))
            parts.append(
                _json(None if self.simulate is None else self.simulate.model_dump(mode="json"))
            )
        return "[" + ", ".join(parts) + "]"

    @property
    def legacy_fingerprint(self) -> str:
        """The fingerprint results files held before ``v2:``, from the templated turns: a run
        started by an earlier version resumes without running again what it finished."""
        return hashlib.sha256(self.legacy_body.encode()).hexdigest()[:16]


#: What starts a fingerprint of a spec and a row (one without it is a legacy fingerprint).
FINGERPRINT_PREFIX = "v2:"


def spec_text(spec: ConversationSpec) -> str:
    """What a spec makes a conversation do, as JSON text: its id, variables, turns,
    expectations and simulated user, templates unrendered."""
    fields = {"id", "variables", "turns", "expect", "simulate"}
    return _json(spec.model_dump(mode="json", include=fields))


def _fingerprint(spec: str, row: Mapping[str, Any]) -> str:
    digest = _spec_digest(spec).copy()  # the spec's text is hashed once, not once per row
    digest.update(_json(dict(row)).encode())
    return FINGERPRINT_PREFIX + digest.hexdigest()[:16]


@functools.lru_cache(maxsize=64)
def _spec_digest(spec: str) -> hashlib._Hash:
    return hashlib.sha256((spec + "\n").encode())


#: ``json.dumps(value, sort_keys=True, default=str)``, without making an encoder each time.
_json = json.JSONEncoder(sort_keys=True, default=str).encode


#: The JSON text of turns and expectations, by the object (kept alive with it, so an id is never
#: reused): those a suite's rows share are written once. Bounded: templated ones pass through.
_PART_TEXT: dict[int, tuple[object, str]] = {}
_PART_TEXT_MAX = 4096


def _json_list(items: tuple[Turn, ...] | tuple[Expectation, ...]) -> str:
    texts = []
    for item in items:
        known = _PART_TEXT.get(id(item))
        if known is None or known[0] is not item:
            if len(_PART_TEXT) >= _PART_TEXT_MAX:
                _PART_TEXT.clear()
            known = (item, _json(item.model_dump(mode="json")))
            _PART_TEXT[id(item)] = known
        texts.append(known[1])
    return "[" + ", ".join(texts) + "]"


@functools.lru_cache(maxsize=1024)
def _template(text: str) -> Template:
    """A compiled template: compiling costs far more than rendering, and every row of a dataset
    renders the same few strings (a 10,000-row suite spent most of its time compiling)."""
    return _jinja.from_string(text)


#: ``{{ row.name }}``: the one expression most templates hold.
_ROW_FIELD = re.compile(r"\{\{ *row\.([A-Za-z_][A-Za-z0-9_]*) *\}\}")
_DICT_NAMES = frozenset(dir(dict))


@functools.lru_cache(maxsize=1024)
def _row_fields(text: str) -> tuple[str, ...] | None:
    """The row fields a template puts in its text, when that is all it does; None when Jinja
    must render it (any other expression, a block, a comment, a brace before an expression, a
    name a dict has as an attribute, or text Jinja rewrites: a carriage return, a trailing
    newline)."""
    if "{%" in text or "{#" in text or "{{{" in text or "\r" in text or text.endswith("\n"):
        return None  # "{{{": Jinja reads "{{" then "{...", not "{" then "{{...}}"
    if "{{" in _ROW_FIELD.sub("", text):
        return None
    names = tuple(_ROW_FIELD.findall(text))
    return None if _DICT_NAMES.intersection(names) else names


def _is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


#: Renders a value's templates for one row.
Renderer = Callable[[Mapping[str, Any]], Any]


def _renderer(value: Any) -> Renderer:
    """What renders ``value`` (a string, or lists and dicts of them) for a row, made once per
    spec: each row walks only the templated strings; what holds none is the value itself."""
    if isinstance(value, str):
        return _text_renderer(value) if _is_template(value) else _constant(value)
    if isinstance(value, list | tuple):
        if not templated(value):
            return _constant(list(value))
        items = [_renderer(item) for item in value]
        return lambda row: [render(row) for render in items]
    if isinstance(value, dict):
        if not templated(value):
            return _constant(value)
        fields = [(key, _renderer(item)) for key, item in value.items()]
        return lambda row: {key: render(row) for key, render in fields}
    return _constant(value)


def _constant(value: Any) -> Renderer:
    return lambda row: value


def _text_renderer(text: str) -> Renderer:
    names = _row_fields(text)
    if names is None:
        return lambda row: _template(text).render(row=row)
    # "a-{{ row.user }}-b" as "a-{user}-b", literal braces doubled: str.format_map puts each
    # value in as format(value, ""), which is str(value), what Jinja renders.
    pieces = _ROW_FIELD.split(text)
    form = "".join(
        piece.replace("{", "{{").replace("}", "}}") if index % 2 == 0 else "{" + piece + "}"
        for index, piece in enumerate(pieces)
    )

    def substituted(row: Mapping[str, Any]) -> str:
        # Without a render's fixed cost: about ten times faster than Jinja, which a 100,000-row
        # dataset pays four times a row. A row without one of the fields is Jinja's to refuse.
        try:
            return form.format_map(row)
        except KeyError:
            return _template(text).render(row=row)

    return substituted


def _rows(path: Path, source: str) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """``(line number, row)`` from a CSV (header row first) or JSONL file."""
    if not path.is_file():
        raise SuiteError(source, [f"{source}: dataset {path} does not exist"])
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            if path.suffix.lower() == ".jsonl":
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except ValueError as exc:
                        raise SuiteError(
                            source, [f"{path}:{number}: not a JSON object: {exc}"]
                        ) from None
                    if not isinstance(row, dict):
                        raise SuiteError(source, [f"{path}:{number}: each line must be an object"])
                    yield number, row
            elif path.suffix.lower() == ".csv":
                reader = csv.DictReader(handle)
                for row in reader:
                    if None in row:
                        raise SuiteError(
                            source, [f"{path}:{reader.line_num}: more cells than header columns"]
                        )
                    yield reader.line_num, dict(row)
            else:
                raise SuiteError(source, [f"{source}: dataset {path} must end in .csv or .jsonl"])
    except UnicodeDecodeError as exc:
        raise SuiteError(
            source, [f"{path}: byte {exc.start} is not UTF-8; save the dataset as UTF-8"]
        ) from None
    except csv.Error as exc:  # e.g. a cell over the csv module's field size limit
        raise SuiteError(source, [f"{path}: not readable as CSV: {exc}"]) from None


def _row_tags(row: Mapping[str, Any]) -> tuple[str, ...]:
    """A dataset row's ``tags`` column: a list (JSONL) or words split on commas and spaces."""
    value = row.get("tags")
    if value is None or value == "":
        return ()
    words = value if isinstance(value, list) else re.split(r"[,\s]+", str(value))
    tags = tuple(str(word).strip() for word in words if str(word).strip())
    bad = [tag for tag in tags if not re.fullmatch(TAG_PATTERN, tag)]
    if bad:
        raise ValueError(
            f"tag {bad[0]!r} in the 'tags' column: use letters, digits and -_.:/ (64 at most)"
        )
    return tags


def templated(value: Any) -> bool:
    """Whether any string of ``value`` (a dumped spec, turn, expectation or simulated user) is a
    template."""
    if isinstance(value, str):
        return _is_template(value)
    if isinstance(value, list | tuple):
        return any(templated(item) for item in value)
    if isinstance(value, dict):
        return any(templated(item) for item in value.values())
    return False


@dataclass(frozen=True)
class _Parts:
    """A spec's id, variables, turns, expectations and simulated user, ready for each row: a
    part with a template is kept as its renderer, to render and check for each row; a part
    without one is used as it is (a row cannot change it, and rendering and checking it again
    cost most of a row's expansion)."""

    id: Renderer
    variables: Renderer
    turns: tuple[Turn | Renderer, ...]
    expect: tuple[Expectation | Renderer, ...]
    simulate: SimulateSpec | Renderer | None

    @classmethod
    def of(cls, spec: ConversationSpec) -> _Parts:
        def part(model: Any) -> Any:
            dumped = model.model_dump(mode="python")
            return _renderer(dumped) if templated(dumped) else model

        return cls(
            id=_renderer(spec.id),
            variables=_renderer(spec.variables),
            turns=tuple(part(turn) for turn in spec.turns),
            expect=tuple(part(expectation) for expectation in spec.expect),
            simulate=None if spec.simulate is None else part(spec.simulate),
        )


def _conversation_id(parts: _Parts, row: Mapping[str, Any]) -> str:
    try:
        conversation_id = str(parts.id(row)).strip()
    except TemplateError as exc:
        raise ValueError(f"template error: {exc.message or exc}") from None
    if not conversation_id:
        raise ValueError("the id is empty after templating")
    if len(conversation_id) > MAX_ID_LENGTH:
        raise ValueError(
            f"the id is {len(conversation_id)} characters after templating; keep ids to "
            f"{MAX_ID_LENGTH} (use a shorter column, or a slice: '{{{{ row.user[:50] }}}}')"
        )
    return conversation_id


def _expand(
    parts: _Parts,
    conversation_id: str,
    row: Mapping[str, Any],
    origin: str,
    tags: tuple[str, ...],
    *,
    source: str,
    hint: str,
    **fields: Any,
) -> Conversation:
    """The conversation of a row, its turns templated and checked.

    Raises:
        SuiteError: a template or a templated value is wrong, located in ``source`` (the
            suite's path) at ``origin``, with ``hint`` after the cause.
    """
    try:
        variables = dict(parts.variables(row))  # its own, though a row may change none
        turns = tuple(
            part if isinstance(part, Turn) else Turn.model_validate(part(row))
            for part in parts.turns
        )
        expect = tuple(
            part if isinstance(part, Expectation) else Expectation.model_validate(part(row))
            for part in parts.expect
        )
        simulate = (
            parts.simulate
            if parts.simulate is None or isinstance(parts.simulate, SimulateSpec)
            else SimulateSpec.model_validate(parts.simulate(row))
        )
    except TemplateError as exc:
        cause = f"template error: {exc.message or exc}"
    except ValidationError as exc:  # before ValueError, which it is
        cause = "after templating: " + exc.errors()[0]["msg"].removeprefix("Value error, ")
    except ValueError as exc:
        cause = str(exc)
    else:
        return Conversation(
            conversation_id,
            variables,
            turns,
            origin,
            tags,
            expect=expect,
            simulate=simulate,
            row=row,
            **fields,
        )
    raise _row_error(source, origin, cause, hint)


def _row_error(source: str, origin: str, cause: object, hint: str) -> SuiteError:
    """What a row that cannot be expanded raises: where it is, the cause, the hint."""
    return SuiteError(source, [f"{source}: {origin}: {cause}{hint}"])


@dataclass(frozen=True)
class PlannedRun:
    """A run of a conversation, named and fingerprinted before its turns are templated: what a
    resumed run's counting pass needs to tell what is done (:func:`iter_planned`)."""

    key: str
    #: Templates the conversation's turns: this run of it, ready to run.
    conversation: Callable[[], Conversation]
    spec_text: str
    row: Mapping[str, Any]

    @property
    def fingerprint(self) -> str:
        """The conversation's :attr:`Conversation.fingerprint`, without templating it."""
        return _fingerprint(self.spec_text, self.row)


def iter_runs(loaded: LoadedSuite) -> Iterator[Conversation]:
    """Every run of the selected conversations: each conversation ``repeat`` times in a row,
    each with its position in the run."""
    for planned in iter_planned(loaded):
        yield planned.conversation()


def iter_conversations(loaded: LoadedSuite, *, selected: bool = True) -> Iterator[Conversation]:
    """Every conversation of a suite the run's selection takes (all of them with
    ``selected=False``), in file order, with unique IDs.

    Raises:
        SuiteError: at the first row that cannot be expanded, naming the row and the fix.
    """
    for planned in _walk(loaded, selected=selected, runs=False):
        yield planned.conversation()


def iter_planned(loaded: LoadedSuite) -> Iterator[PlannedRun]:
    """Every run of the selected conversations (as :func:`iter_runs`), each templated only
    when its :attr:`PlannedRun.conversation` is called.

    Raises:
        SuiteError: at the first row whose id cannot be templated or is used twice (a row's
            turns, once templated, raise their own).
    """
    return _walk(loaded, selected=True, runs=True)


def _walk(loaded: LoadedSuite, *, selected: bool, runs: bool) -> Iterator[PlannedRun]:
    """The suite's conversations (each run of them with ``runs``), in file order."""
    source = str(loaded.path)
    suite, selection = loaded.suite, loaded.selection
    seen: dict[str, str] = {}
    position = 0  # of the first run of the next selected conversation
    for index, spec in enumerate(suite.conversations):
        parts = _Parts.of(spec)
        text = spec_text(spec)
        repeats = spec.repeat or suite.repeat
        pass_rate = suite.pass_rate if spec.pass_rate is None else spec.pass_rate
        outputs = suite.outputs_of(spec)
        where = f"conversations[{index}]"
        hint = "" if spec.dataset else " (templates need a 'dataset' to read rows from)"
        if spec.dataset is None:
            rows: Iterator[tuple[int | None, dict[str, Any]]] = iter([(None, {})])
            dataset_name = ""
        else:
            dataset_path = (loaded.base_dir / spec.dataset).resolve()
            rows = _rows(dataset_path, source)
            dataset_name = spec.dataset
        checked = False
        for line, row in rows:
            origin = where if line is None else f"{where}, line {line} of {dataset_name}"
            if outputs and not checked:
                _check_columns(source, where, dataset_name, outputs, row)
                checked = True
            try:
                conversation_id = _conversation_id(parts, row)
                tags = tuple(dict.fromkeys([*spec.tags, *_row_tags(row)]))  # in order, each once
            except ValueError as exc:
                raise _row_error(source, origin, exc, hint) from None
            if conversation_id in seen:
                raise SuiteError(
                    source,
                    [
                        f"{source}: {origin}: id {conversation_id!r} is already used by "
                        f"{seen[conversation_id]}; conversation ids must be unique"
                    ],
                )
            seen[conversation_id] = origin
            if selected and not selection.takes(conversation_id, tags):
                continue

            conversation = functools.partial(
                _expand,
                parts,
                conversation_id,
                row,
                origin,
                tags,
                source=source,
                hint=hint,
                repeats=repeats,
                pass_rate=pass_rate,
                outputs=outputs,
                position=position,
                spec_text=text,
            )
            # The runs of a repeated conversation share one templating of it.
            first: Callable[[], Conversation] = (
                functools.cache(conversation) if runs and repeats > 1 else conversation
            )
            yield PlannedRun(run_key_of(conversation_id, 1, repeats), first, text, row)
            for repetition in range(2, repeats + 1) if runs else ():
                yield PlannedRun(
                    run_key_of(conversation_id, repetition, repeats),
                    functools.partial(_repetition, first, repetition),
                    text,
                    row,
                )
            position += repeats


def _repetition(conversation: Callable[[], Conversation], repetition: int) -> Conversation:
    first = conversation()
    return replace(first, repetition=repetition, position=first.position + repetition - 1)


def _check_columns(
    source: str, where: str, dataset: str, outputs: Mapping[str, Output], row: Mapping[str, Any]
) -> None:
    """An output row holds the input row's columns and the outputs: no name may be both."""
    clashing = [name for name in outputs if name in row]
    if clashing:
        raise SuiteError(
            source,
            [
                f"{source}: {where}: output {clashing[0]!r} clashes with the input column "
                f"{clashing[0]!r} of {dataset}: rename the output"
            ],
        )
