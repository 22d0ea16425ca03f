"""The package's flows, each defined once, with the parameters the Prefect UI's run form shows.

``prefect-sessions run`` calls :func:`batch_conversations` in-process; the deployments in
``prefect.yaml`` point at the thin entrypoints in the repository's ``flows/`` folder, which import
these.
"""

from prefect_sessions.flows.batch import batch_conversations
from prefect_sessions.flows.maintenance import session_maintenance
from prefect_sessions.flows.shard import batch_conversations_shard
from prefect_sessions.flows.triggered import triggered_conversation

__all__ = [
    "batch_conversations",
    "batch_conversations_shard",
    "session_maintenance",
    "triggered_conversation",
]
