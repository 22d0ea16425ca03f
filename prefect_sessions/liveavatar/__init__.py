"""LiveAvatar (HeyGen): session tokens, start/keep-alive/stop, session lists, transcripts and the
LITE-mode websocket, as a typed async client and Prefect tasks.

Every public name lives in :mod:`prefect_sessions.liveavatar.api` and is imported on first use,
so that ``import prefect_sessions.liveavatar`` alone (the suite validator reading the provider's
registry entry) does not load Prefect.
"""

from typing import TYPE_CHECKING

from prefect_sessions._lazy import lazy_exports

if TYPE_CHECKING:
    from prefect_sessions.liveavatar.api import *  # noqa: F403
else:
    __getattr__, __dir__ = lazy_exports(__name__, "prefect_sessions.liveavatar.api")
