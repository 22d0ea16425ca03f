"""Deployable entrypoint, as ``prefect.yaml`` names it:
``flows/batch_conversations_shard.py:batch_conversations_shard``.

The flow is defined once, in :mod:`prefect_sessions.flows.shard`; this file only names it for
``prefect deploy`` and the workers, which load flows by file path.
"""

from prefect_sessions.flows.shard import batch_conversations_shard

__all__ = ["batch_conversations_shard"]
