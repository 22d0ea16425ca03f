"""Cut Vectara's full OpenAPI document down to the agent operations the emulator serves, or to
the agent operations it does not serve (``--not-emulated``: each must answer as Vectara answers an
unknown resource).

    python tests/contract/vendor_documents/reduce_vectara.py FULL.yaml OUT.yaml [--not-emulated]

Keeps the listed paths verbatim and every component they reach (``$ref`` and discriminator
``mapping`` values, followed transitively), the security schemes, ``openapi``/``info``/``servers``/
``security`` and the used tags. Nothing is reworded or corrected: corrections belong in the
contract test's ``SPEC_EXCEPTIONS``, each with its reason.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import yaml

AGENT_PATHS = [
    "/v2/agents",
    "/v2/agents/{agent_key}",
    "/v2/agents/{agent_key}/sessions",
    "/v2/agents/{agent_key}/sessions/{session_key}",
    "/v2/agents/{agent_key}/sessions/{session_key}/events",
    "/v2/agents/{agent_key}/sessions/{session_key}/events/{event_id}",
    "/v2/agents/{agent_key}/sessions/{session_key}/events/{event_id}/hide",
    "/v2/agents/{agent_key}/sessions/{session_key}/events/{event_id}/unhide",
    "/v2/agents/{agent_key}/sessions/{session_key}/outstanding_client_tool_calls",
    "/v2/agents/{agent_key}/sessions/{session_key}/artifacts",
    "/v2/agents/{agent_key}/sessions/{session_key}/artifacts/{artifact_id}",
]

#: The agent operations of the current document the emulator does not serve.
NOT_EMULATED_PATHS = [
    "/v2/agents/{agent_key}/schedules",
    "/v2/agents/{agent_key}/schedules/{schedule_key}",
    "/v2/agents/{agent_key}/schedules/{schedule_key}/executions",
    "/v2/agents/{agent_key}/identity",
    "/v2/agents/{agent_key}/secrets",
    "/v2/agents/{agent_key}/connectors",
    "/v2/agents/{agent_key}/connectors/{connector_id}",
]


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            elif key == "mapping" and isinstance(value, dict):
                yield from (v for v in value.values() if isinstance(v, str))
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def reached(source: dict[str, Any], node: Any) -> dict[str, dict[str, Any]]:
    """Every component of ``source`` that ``node`` reaches, transitively, by kind."""
    components: dict[str, dict[str, Any]] = {}
    todo = list(_refs(node))
    while todo:
        _, _, kind, name = todo.pop().split("/", 3)
        if name in components.get(kind, {}):
            continue
        found = source["components"][kind][name]
        components.setdefault(kind, {})[name] = found
        todo.extend(_refs(found))
    return components


def reduce(source: dict[str, Any], paths: list[str] = AGENT_PATHS) -> dict[str, Any]:
    out = {key: source[key] for key in ("openapi", "info", "servers", "security") if key in source}
    out["paths"] = {path: source["paths"][path] for path in paths}
    components = reached(source, out["paths"])
    schemes = {name for requirement in out.get("security", []) for name in requirement}
    for item in out["paths"].values():
        for operation in item.values():
            for requirement in operation.get("security") or []:
                schemes.update(requirement)
    components["securitySchemes"] = {
        name: source["components"]["securitySchemes"][name] for name in sorted(schemes)
    }
    out["components"] = {kind: dict(sorted(found.items())) for kind, found in components.items()}
    used = {tag for item in out["paths"].values() for op in item.values() for tag in op["tags"]}
    out["tags"] = [tag for tag in source.get("tags", []) if tag["name"] in used]
    return out


def main(source: str, target: str, *flags: str) -> None:
    paths = NOT_EMULATED_PATHS if "--not-emulated" in flags else AGENT_PATHS
    with open(source) as full:
        reduced = reduce(yaml.safe_load(full), paths)
    with open(target, "w") as out:
        yaml.safe_dump(reduced, out, sort_keys=False, allow_unicode=True, width=100)
    operations = sum(len(item) for item in reduced["paths"].values())
    print(f"{len(reduced['paths'])} paths, {operations} operations")


if __name__ == "__main__":
    main(*sys.argv[1:])
