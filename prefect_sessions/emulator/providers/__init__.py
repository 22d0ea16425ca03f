"""The emulated vendor APIs, one module each; every module defines ``API``
(:class:`~prefect_sessions.emulator.api.EmulatedAPI`).

They are found by listing this package, so the emulator names no vendor outside these modules:
a fourth vendor's emulated API is one more module here.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from prefect_sessions.emulator.api import EmulatedAPI


@functools.cache
def emulated_apis() -> tuple[EmulatedAPI, ...]:
    """Every emulated API, by name."""
    found: list[EmulatedAPI] = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        api = getattr(module, "API", None)
        if isinstance(api, EmulatedAPI):
            found.append(api)
    return tuple(sorted(found, key=lambda api: api.name))


def names() -> tuple[str, ...]:
    """The emulated APIs' names."""
    return tuple(api.name for api in emulated_apis())


def owner_of(path: str) -> EmulatedAPI | None:
    """The emulated API a request path belongs to, if any."""
    return next((api for api in emulated_apis() if api.owns(path)), None)
