"""Deployable entrypoint, as ``prefect.yaml`` names it:
``flows/triggered_conversation.py:triggered_conversation``.

The flow is defined once, in :mod:`prefect_sessions.flows.triggered`; this file only names it for
``prefect deploy`` and the workers, which load flows by file path.
"""

from prefect_sessions.flows.triggered import triggered_conversation

__all__ = ["triggered_conversation"]
