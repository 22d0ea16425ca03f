"""Deployable entrypoint ``flows/batch_conversations.py:batch_conversations`` (``prefect.yaml``).

The flow is defined once, in :mod:`prefect_sessions.flows.batch`; this file only names it for
``prefect deploy`` and the workers, which load flows by file path.
"""

from prefect_sessions.flows.batch import batch_conversations

__all__ = ["batch_conversations"]
