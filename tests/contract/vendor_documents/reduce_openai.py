"""Cut OpenAI's OpenAPI document down to the operations the emulated model serves.

    python tests/contract/vendor_documents/reduce_openai.py openapi.yaml OUT.json

Keeps ``POST /chat/completions``, ``POST /embeddings``, ``GET /models`` and
``GET /models/{model}`` verbatim (the other methods of those paths, stored completions, are not
emulated), every component they reach (followed transitively, as ``reduce_vectara.py`` does), the
security schemes, ``openapi``/``info``/``servers``/``security``. Nothing is reworded.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml
from reduce_vectara import reached  # the same walk over $ref and discriminator mappings

OPERATIONS = {
    "/chat/completions": ["post"],
    "/embeddings": ["post"],
    "/models": ["get"],
    "/models/{model}": ["get"],
}


def reduce(source: dict[str, Any]) -> dict[str, Any]:
    out = {key: source[key] for key in ("openapi", "info", "servers", "security") if key in source}
    out["paths"] = {
        path: {method: source["paths"][path][method] for method in methods}
        for path, methods in OPERATIONS.items()
    }
    components = reached(source, out["paths"])
    components["securitySchemes"] = source["components"]["securitySchemes"]
    out["components"] = components
    return out


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    with open(sys.argv[2], "w", encoding="utf-8") as handle:
        json.dump(reduce(document), handle, indent=1, sort_keys=False)
        handle.write("\n")
