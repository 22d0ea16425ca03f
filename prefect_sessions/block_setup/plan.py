"""The blocks wanted: read from a YAML file or from environment variables, and checked whole
before anything is saved (every problem names the field and the fix; no secret is echoed)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from prefect.blocks.core import Block
from pydantic import SecretStr, ValidationError

from prefect_sessions.credentials import ProviderCredentials
from prefect_sessions.errors import ConfigurationError
from prefect_sessions.providers import credentials_types

#: Prefect's rule for block document names.
_BLOCK_NAME = re.compile(r"^[a-z0-9-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_SUFFIX = "_env"
_RESERVED = ("type", "name")
DEFAULT_BLOCK_NAME = "default"

Outcome = Literal["created", "updated", "unchanged"]


class BlockSetupError(ConfigurationError):
    """The input cannot be used; ``problems`` lists every reason, each naming a field and a fix."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def block_types() -> list[type[ProviderCredentials]]:
    """The registered providers' block types (:mod:`prefect_sessions.providers`), by slug."""
    return list(credentials_types())


def _types_by_key() -> dict[str, type[ProviderCredentials]]:
    # The slug is what users see in the UI and in `prefect block ls`; the class name is accepted
    # too because that is what they import.
    keys: dict[str, type[ProviderCredentials]] = {}
    for cls in block_types():
        keys[cls.get_block_type_slug()] = cls
        keys[cls.__name__] = cls
    return keys


def secret_fields(cls: type[Block]) -> list[str]:
    """Fields Prefect treats as secrets (masked in the UI), from the block's own schema."""
    return [str(name) for name in cls.model_json_schema().get("secret_fields", [])]


def _fields(cls: type[Block]) -> list[str]:
    return list(cls.model_fields)


@dataclass
class PlannedBlock:
    """A validated block document, ready to save; ``sources`` maps field to environment variable."""

    cls: type[ProviderCredentials]
    name: str
    block: ProviderCredentials
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return f"{self.cls.get_block_type_slug()}/{self.name}"

    def describe(self) -> str:
        """Where the values came from, secrets named by their variable only."""
        if not self.sources:
            return ""
        parts = [f"{name} from ${variable}" for name, variable in sorted(self.sources.items())]
        return f" ({', '.join(parts)})"


def _scrub(text: str, secrets: Iterable[str]) -> str:
    # Defence in depth: no message below interpolates a value, but a validator's message might.
    for secret in secrets:
        if secret:
            text = text.replace(secret, "**********")
    return text


def _variable(cls: type[Block], name: str) -> str:
    """The environment variable a field is read from by default, e.g. ``VOICEFLOW_API_KEY``."""
    assert issubclass(cls, ProviderCredentials)
    return f"{env_prefix(cls)}{name.upper()}"


def _yaml_fix(cls: type[Block], name: str) -> str:
    if name in secret_fields(cls):
        return f"add `{name}{_ENV_SUFFIX}: {_variable(cls, name)}` and export that variable"
    return f"add `{name}: <value>`"


def _env_fix(cls: type[Block], name: str) -> str:
    return f"export {_variable(cls, name)}"


def _validation_problems(
    where: str, cls: type[Block], exc: ValidationError, fix: Callable[[type[Block], str], str]
) -> list[str]:
    problems = []
    # Without the input: it may be a secret.
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        name = ".".join(str(part) for part in error["loc"]) or "block"
        if error["type"] == "missing":
            problems.append(f"{where}: {name} is required: {fix(cls, name)}")
        else:
            problems.append(f"{where}: {name}: {error['msg']}")
    return problems


def _validate(
    cls: type[ProviderCredentials],
    name: str,
    values: dict[str, Any],
    sources: dict[str, str],
    where: str,
    fix: Callable[[type[Block], str], str],
) -> tuple[PlannedBlock | None, list[str]]:
    secrets = [
        value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        for key, value in values.items()
        if key in secret_fields(cls)
    ]
    if not _BLOCK_NAME.match(name):
        return None, [
            f"{where}: name {name[:60]!r} is not a valid block name: use lowercase letters, "
            "digits and dashes, e.g. 'production'"
        ]
    try:
        block = cls.model_validate(values)
    except ValidationError as exc:
        return None, [_scrub(p, secrets) for p in _validation_problems(where, cls, exc, fix)]
    try:
        # Building a client checks what the model alone cannot (e.g. Vectara's "an API key or an
        # OAuth client, not both"); it opens no connection.
        block.get_client()
    except (ConfigurationError, ValueError) as exc:
        return None, [_scrub(f"{where}: {exc}", secrets)]
    return PlannedBlock(cls=cls, name=name, block=block, sources=sources), []


# -- reading the wanted blocks ------------------------------------------------------------------


def plan_from_yaml(
    text: str, environ: Mapping[str, str], *, source: str = "<yaml>"
) -> list[PlannedBlock]:
    """Parse and validate a blocks file (see ``blocks/blocks.example.yaml``).

    Raises:
        BlockSetupError: with every problem found, each naming the block, the field and the fix.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # Report the position and the parser's complaint, never the offending line: it might hold
        # a secret someone pasted by mistake.
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BlockSetupError([f"{source}: not valid YAML{where}: {problem}"]) from None
    if not isinstance(document, dict) or not isinstance(document.get("blocks"), list):
        raise BlockSetupError(
            [f"{source}: expected a mapping with a `blocks:` list (see blocks.example.yaml)"]
        )
    types = _types_by_key()
    valid_types = ", ".join(cls.get_block_type_slug() for cls in block_types())
    planned: list[PlannedBlock] = []
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(document["blocks"], start=1):
        where = f"{source}: blocks[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected a mapping with `type`, `name` and fields")
            continue
        type_key, name = item.get("type"), item.get("name")
        if not isinstance(type_key, str) or type_key not in types:
            shown = f" {type_key!r}" if isinstance(type_key, str) else ""
            problems.append(
                f"{where}: unknown block type{shown}: set `type` to one of {valid_types}"
            )
            continue
        cls = types[type_key]
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: `name` is missing: give the block a name, e.g. production")
            continue
        where = f"{source}: {cls.get_block_type_slug()}/{name}"
        if (cls.get_block_type_slug(), name) in seen:
            problems.append(f"{where}: defined twice: remove one of them")
            continue
        seen.add((cls.get_block_type_slug(), name))
        values, sources, item_problems = _values_from_item(cls, item, environ, where)
        if item_problems:
            problems.extend(item_problems)
            continue
        block, block_problems = _validate(cls, name, values, sources, where, _yaml_fix)
        problems.extend(block_problems)
        if block is not None:
            planned.append(block)
    if problems:
        raise BlockSetupError(problems)
    if not planned:
        raise BlockSetupError([f"{source}: the `blocks:` list is empty: add at least one block"])
    return planned


def _values_from_item(
    cls: type[Block], item: Mapping[str, Any], environ: Mapping[str, str], where: str
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    fields, secrets = _fields(cls), set(secret_fields(cls))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    for key, value in item.items():
        if key in _RESERVED:
            continue
        key = str(key)
        if key.endswith(_ENV_SUFFIX) and key.removesuffix(_ENV_SUFFIX) in fields:
            target = key.removesuffix(_ENV_SUFFIX)
            if target in item:
                problems.append(f"{where}: both {target} and {key} are set: keep one")
                continue
            if not isinstance(value, str) or not _ENV_NAME.match(value):
                problems.append(
                    f"{where}: {key} must name an environment variable, e.g. "
                    f"{key}: {_variable(cls, target)}"
                )
                continue
            if value not in environ or (target in secrets and not environ[value]):
                state = "is not set" if value not in environ else "is empty"
                problems.append(
                    f"{where}: {key} names ${value}, which {state}: export {value} "
                    f"(or change {key})"
                )
                continue
            values[target], sources[target] = environ[value], value
        elif key in secrets:
            # The value is not repeated: it is a secret that should not be in the file at all.
            problems.append(
                f"{where}: {key} is a secret and must not be written in the file: replace it "
                f"with `{key}{_ENV_SUFFIX}: {_variable(cls, key)}` and export that variable"
            )
        elif key in fields:
            values[key] = value
        else:
            problems.append(
                f"{where}: unknown field {key[:60]!r}: {cls.get_block_type_slug()} has "
                f"{', '.join(fields)} (and <field>_env to read one from the environment)"
            )
    return values, sources, problems


def env_prefix(cls: type[ProviderCredentials]) -> str:
    """The environment variable prefix of a block type, e.g. ``VOICEFLOW_``."""
    return f"{cls.provider_name.upper()}_"


def plan_from_env(environ: Mapping[str, str]) -> list[PlannedBlock]:
    """One block per block type that has variables in ``environ``.

    For a type with prefix ``VOICEFLOW_``, field ``api_key`` comes from ``VOICEFLOW_API_KEY``,
    ``base_url`` from ``VOICEFLOW_BASE_URL`` and so on; the block is named by
    ``VOICEFLOW_BLOCK_NAME`` (default ``default``). Types with no such variable are left alone.

    Raises:
        BlockSetupError: with every problem found.
    """
    planned: list[PlannedBlock] = []
    problems: list[str] = []
    for cls in block_types():
        prefix = env_prefix(cls)
        sources = {
            name: _variable(cls, name) for name in _fields(cls) if _variable(cls, name) in environ
        }
        name_variable = f"{prefix}BLOCK_NAME"
        if not sources and name_variable not in environ:
            continue
        name = environ.get(name_variable) or DEFAULT_BLOCK_NAME
        where = f"environment: {cls.get_block_type_slug()}/{name}"
        values = {name: environ[variable] for name, variable in sources.items()}
        block, block_problems = _validate(cls, name, values, sources, where, _env_fix)
        problems.extend(block_problems)
        if block is not None:
            planned.append(block)
    if problems:
        raise BlockSetupError(problems)
    if not planned:
        wanted = ", ".join(_variable(cls, secret_fields(cls)[0]) for cls in block_types())
        raise BlockSetupError(
            [f"no credentials in the environment: export one of {wanted}, or pass --file FILE"]
        )
    return planned
