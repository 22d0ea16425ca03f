"""The vendors' OpenAPI documents (``../shared/specs`` beside the repo) as schema validators."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "specs"


@cache
def load_spec(name: str) -> dict[str, Any]:
    """Load a spec by file name (relative to the specs folder); skip when it is not beside us."""
    path = SPECS / name
    if not path.exists():
        pytest.skip(f"vendor spec {name} not found in {SPECS}")
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    assert isinstance(data, dict)
    return data


def validator(spec: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for one schema of ``spec``; its ``#/components/...`` refs resolve in the spec."""
    return Draft202012Validator({**schema, "components": spec.get("components", {})})


def request_schema(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    operation = spec["paths"][path][method.lower()]
    schema: dict[str, Any] = operation["requestBody"]["content"]["application/json"]["schema"]
    return schema


def response_schema(spec: dict[str, Any], method: str, path: str, status: str) -> dict[str, Any]:
    operation = spec["paths"][path][method.lower()]
    schema: dict[str, Any] = operation["responses"][status]["content"]["application/json"]["schema"]
    return schema


def assert_valid(spec: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    """Fail with every schema error listed, not just the first."""
    errors = sorted(validator(spec, schema).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
