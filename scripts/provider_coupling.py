"""How far provider knowledge leaks: for each provider, the modules outside its package that import
it, and the modules that name a provider in code (strings and names, not docstrings or comments).

    python scripts/provider_coupling.py          # a table; exit 0
    python scripts/provider_coupling.py --json   # the same as JSON

The emulator's vendor modules (``prefect_sessions/emulator/providers/<provider>.py``) count as
that provider's: they are its emulated API, kept apart from its client on purpose.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "prefect_sessions"
PROVIDERS = ("voiceflow", "vectara", "liveavatar")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _owner(module: str) -> str | None:
    """The provider a module belongs to, if any."""
    parts = module.split(".")
    for name in PROVIDERS:
        if parts[1:2] == [name] or parts[1:3] == ["emulator", name]:
            return name
        if parts[1:3] == ["emulator", "providers"] and parts[3:4] == [name]:
            return name
    return None


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                doc = body[0].value
                if isinstance(doc.value, str):
                    lines.update(range(doc.lineno, (doc.end_lineno or doc.lineno) + 1))
    return lines


def _names_a_provider(source: str, tree: ast.AST) -> bool:
    docstrings = _docstring_lines(tree)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in (tokenize.NAME, tokenize.STRING) or token.start[0] in docstrings:
            continue
        if any(name in token.string.lower() for name in PROVIDERS):
            return True
    return False


def measure() -> dict[str, dict[str, list[str]]]:
    importers: dict[str, list[str]] = {name: [] for name in PROVIDERS}
    namers: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module(path)
        owner = _owner(module)
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        if owner is None and _names_a_provider(source, tree):
            namers.append(module)
        for name in PROVIDERS:
            if owner == name:
                continue
            target = f"prefect_sessions.{name}"
            if any(i == target or i.startswith(target + ".") for i in _imports(tree)):
                importers[name].append(module)
    return {"importers": importers, "namers": {"any provider": namers}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    found = measure()
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for name, modules in found["importers"].items():
        print(f"{name}: imported by {len(modules)} modules outside it: {', '.join(modules)}")
    namers = found["namers"]["any provider"]
    print(f"{len(namers)} modules outside the providers name one in code: {', '.join(namers)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
