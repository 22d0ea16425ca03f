"""Public names imported on first use, so that importing a package costs nothing until a name
of it is used (PEP 562).

``prefect-sessions --help`` and ``validate`` must not pay for Prefect (about 2 s of imports): a
provider package keeps its public surface in its ``api`` module and hands it out lazily::

    from typing import TYPE_CHECKING

    from prefect_sessions._lazy import lazy_exports

    if TYPE_CHECKING:  # type checkers and readers see the names where they live
        from prefect_sessions.voiceflow.api import *  # noqa: F403
    else:
        __getattr__, __dir__ = lazy_exports(__name__, "prefect_sessions.voiceflow.api")

The names are the ``__all__`` of the ``api`` module; the first one used imports it, and each is
then kept in the package like an ordinary attribute.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, source: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, serving the ``__all__`` of the module
    ``source`` on first use."""

    def public() -> list[str]:
        return list(importlib.import_module(source).__all__)

    def __getattr__(name: str) -> Any:
        if name == "__all__":
            return public()
        if name.startswith("__"):  # dunder probes (copy, pickle, inspect) are not exports
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(source)
        if name not in module.__all__:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(module, name)
        setattr(sys.modules[package], name, value)  # later look-ups are plain attributes
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(public()))

    return __getattr__, __dir__
