"""Prefect 3 integration for conversational-agent session APIs.

Importing the package registers its credentials blocks with Prefect (Prefect imports it through
the ``prefect.collections`` entry point).
"""

from prefect_sessions._version import __version__
from prefect_sessions.liveavatar.credentials import LiveAvatarCredentials
from prefect_sessions.vectara.credentials import VectaraCredentials
from prefect_sessions.voiceflow.credentials import VoiceflowCredentials

__all__ = ["LiveAvatarCredentials", "VectaraCredentials", "VoiceflowCredentials", "__version__"]
