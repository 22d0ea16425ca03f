"""The provider registry: the one list of providers that everything else iterates.

Suites name a provider by :attr:`Provider.name`; the runner, the UI form's block picker
(:data:`AnyCredentials`), block registration (``prefect-sessions blocks``) and the flows ask this
module, never a provider package. A provider of your own is a package with a
:class:`~prefect_sessions.seam.Provider`, added here by :func:`register` or, for an installed
package, by an entry point in the ``prefect_sessions.providers`` group naming that object::

    [project.entry-points."prefect_sessions.providers"]
    acme = "acme_sessions.provider:PROVIDER"
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Union

from prefect_sessions.liveavatar.provider import PROVIDER as LIVEAVATAR
from prefect_sessions.seam.provider import Provider
from prefect_sessions.vectara.provider import PROVIDER as VECTARA
from prefect_sessions.voiceflow.provider import PROVIDER as VOICEFLOW

if TYPE_CHECKING:
    from prefect_sessions.credentials import ProviderCredentials
    from prefect_sessions.liveavatar.credentials import LiveAvatarCredentials
    from prefect_sessions.vectara.credentials import VectaraCredentials
    from prefect_sessions.voiceflow.credentials import VoiceflowCredentials

ENTRY_POINT_GROUP = "prefect_sessions.providers"

#: The built-in providers, by the name of their credentials block.
_BUILT_IN = {
    "VoiceflowCredentials": VOICEFLOW,
    "VectaraCredentials": VECTARA,
    "LiveAvatarCredentials": LIVEAVATAR,
}

_REGISTRY: dict[str, Provider] = {p.name: p for p in _BUILT_IN.values()}
_entry_points_loaded = False


def register(provider: Provider) -> None:
    """Add a provider (or replace the one of the same name)."""
    _REGISTRY[provider.name] = provider


def unregister(name: str) -> None:
    """Remove a provider by name; a name not registered is ignored."""
    _REGISTRY.pop(name, None)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        loaded = point.load()
        if not isinstance(loaded, Provider):
            raise TypeError(
                f"entry point {point.name} = {point.value} in {ENTRY_POINT_GROUP} is not a "
                "prefect_sessions.seam.Provider"
            )
        _REGISTRY.setdefault(loaded.name, loaded)


def all_providers() -> tuple[Provider, ...]:
    """Every registered provider, by name."""
    _load_entry_points()
    return tuple(_REGISTRY[name] for name in sorted(_REGISTRY))


def names() -> tuple[str, ...]:
    """The providers' suite names, sorted."""
    return tuple(provider.name for provider in all_providers())


def get_provider(name: str) -> Provider:
    """A provider by its suite name.

    Raises:
        ValueError: naming the known providers.
    """
    _load_entry_points()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r}: use one of {', '.join(names())}") from None


def provider_of(credentials: ProviderCredentials) -> Provider:
    """The provider whose credentials block ``credentials`` is.

    Raises:
        ValueError: when no registered provider uses that block type.
    """
    for provider in all_providers():
        if isinstance(credentials, provider.credentials):
            return provider
    raise ValueError(f"{type(credentials).__name__} is not the credentials block of a provider")


def credentials_types() -> tuple[type[ProviderCredentials], ...]:
    """The registered credentials block types, sorted by block type slug."""
    return tuple(
        sorted(
            {provider.credentials for provider in all_providers()},
            key=lambda cls: cls.get_block_type_slug(),
        )
    )


# A credentials block of any built-in provider, as a flow parameter: the UI's run form shows one
# block picker per type of the union (the abstract ProviderCredentials is no block type, so the
# form could not offer a picker for it). Type checkers see the base class. It and the built-in
# blocks are made on first use (PEP 562): the registry itself loads no Prefect.
if TYPE_CHECKING:
    AnyCredentials = ProviderCredentials
else:

    def __getattr__(name: str) -> Any:
        if name == "AnyCredentials":
            value = Union[tuple(p.credentials for p in _BUILT_IN.values())]  # noqa: UP007
        elif name in _BUILT_IN:
            value = _BUILT_IN[name].credentials
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = value
        return value


__all__ = [
    "ENTRY_POINT_GROUP",
    "AnyCredentials",
    "LiveAvatarCredentials",
    "Provider",
    "VectaraCredentials",
    "VoiceflowCredentials",
    "all_providers",
    "credentials_types",
    "get_provider",
    "names",
    "provider_of",
    "register",
    "unregister",
]
