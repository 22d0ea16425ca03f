"""Voiceflow's Conversations API: credentials block, client, models and Prefect tasks.

Every public name lives in :mod:`prefect_sessions.voiceflow.api` and is imported on first use,
so that ``import prefect_sessions.voiceflow`` alone (the suite validator reading the provider's
registry entry) does not load Prefect.
"""

from typing import TYPE_CHECKING

from prefect_sessions._lazy import lazy_exports

if TYPE_CHECKING:
    from prefect_sessions.voiceflow.api import *  # noqa: F403
else:
    __getattr__, __dir__ = lazy_exports(__name__, "prefect_sessions.voiceflow.api")
