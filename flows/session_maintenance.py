"""Deployable entrypoint ``flows/session_maintenance.py:session_maintenance`` (``prefect.yaml``).

The flow is defined once, in :mod:`prefect_sessions.flows.maintenance`; this file only names it for
``prefect deploy`` and the workers, which load flows by file path.
"""

from prefect_sessions.flows.maintenance import session_maintenance

__all__ = ["session_maintenance"]
