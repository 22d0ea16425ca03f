"""Prefect 3 integration for conversational-agent session APIs.

The credentials blocks below are imported on first use (PEP 562): ``import prefect_sessions``
alone loads no Prefect, so ``prefect-sessions --help`` and ``validate`` start quickly. Prefect
registers the blocks through the ``prefect.collections`` entry point, which names
:mod:`prefect_sessions.collection`.
"""

from typing import TYPE_CHECKING

from prefect_sessions._lazy import lazy_exports
from prefect_sessions._version import __version__

if TYPE_CHECKING:
    from prefect_sessions.collection import (
        LiveAvatarCredentials,
        VectaraCredentials,
        VoiceflowCredentials,
    )
else:
    __getattr__, __dir__ = lazy_exports(__name__, "prefect_sessions.collection")


__all__ = ["LiveAvatarCredentials", "VectaraCredentials", "VoiceflowCredentials", "__version__"]
