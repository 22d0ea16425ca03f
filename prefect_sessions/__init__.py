"""Prefect 3 integration for conversational-agent session APIs.

Importing the package registers its credentials blocks with Prefect (Prefect imports it through
the ``prefect.collections`` entry point). The blocks come from the provider registry,
:mod:`prefect_sessions.providers`.
"""

from prefect_sessions._version import __version__
from prefect_sessions.providers import (
    LiveAvatarCredentials,
    VectaraCredentials,
    VoiceflowCredentials,
)

__all__ = ["LiveAvatarCredentials", "VectaraCredentials", "VoiceflowCredentials", "__version__"]
