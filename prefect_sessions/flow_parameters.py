"""Flow parameters that the Prefect UI renders as forms, and that never carry a secret.

A deployment's flow parameter typed as a concrete credentials block (``VoiceflowCredentials``)
gets a block picker in the UI's run form; a run started from the form, from a trigger or from
``prefect.yaml`` stores ``{"$ref": {"block_document_id" | "block_document_slug": ...}}`` in the
flow run's parameters and Prefect loads the block when the run starts, so the secret stays in the
block document. The abstract :class:`~prefect_sessions.credentials.ProviderCredentials` is not a
block type (its schema's ``block_type_slug`` names no registered type), so the UI cannot offer a
picker for it: deployable flows type such parameters as :data:`AnyCredentials`, the union of the
concrete blocks of the registered providers (:mod:`prefect_sessions.providers`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prefect.context import FlowRunContext
from pydantic import ValidationError

from prefect_sessions.errors import ConfigurationError
from prefect_sessions.providers import AnyCredentials
from prefect_sessions.run_options import RunOptions, invalid_options


def run_options(parameters: Mapping[str, Any], *, apart: Iterable[str] = ()) -> RunOptions:
    """A batch flow's typed parameters (``locals()`` at the top of the flow) as the run's one
    options object; ``apart`` names the parameters that are not options (a shard's index).

    Raises:
        ConfigurationError: one line naming each option that does not hold.
    """
    skipped = set(apart)
    given = {name: value for name, value in parameters.items() if name not in skipped}
    try:
        return RunOptions.model_validate(given)
    except ValidationError as exc:
        raise ConfigurationError(invalid_options(exc)) from None


def block_reference(value: Any) -> bool:
    """Whether a stored parameter value is a block reference (``{"$ref": ...}``)."""
    return isinstance(value, Mapping) and "$ref" in value


def inline_credentials(parameters: Mapping[str, Any], names: Iterable[str]) -> list[str]:
    """The parameters among ``names`` that hold a value which is neither empty nor a block
    reference: an inline block, whose secrets were stored with the flow run."""
    return [
        name
        for name in names
        if parameters.get(name) is not None and not block_reference(parameters[name])
    ]


def require_block_references(*names: str) -> None:
    """In a deployment's flow run, refuse credentials parameters given inline.

    Prefect stores a flow run's parameters as given. A block picked in the UI, named in
    ``prefect.yaml`` or in a trigger is stored as a reference; a block written out as a JSON object
    (``prefect deployment run --param credentials='{...}'``) is stored with its secrets. Such a run
    stops here, before any request is sent, and says how to pass the block instead. Runs that are
    not started from a deployment (a flow called in Python) are not checked: Prefect stores their
    block parameters with secrets masked.

    Raises:
        ConfigurationError: naming the parameters to fix.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None or context.flow_run.deployment_id is None:
        return
    inline = inline_credentials(context.flow_run.parameters, names)
    if inline:
        listed = ", ".join(inline)
        raise ConfigurationError(
            f"{listed}: credentials were passed inline, so their secrets are now stored in this "
            "flow run's parameters; rotate the key, save it as a credentials block (python -m "
            'blocks) and pass {"$ref": {"block_document_slug": "<type>/<name>"}} or pick the '
            "block in the run form"
        )


__all__ = [
    "AnyCredentials",
    "block_reference",
    "inline_credentials",
    "require_block_references",
    "run_options",
]
