"""Prefect 3 integration for conversational-agent session APIs.

Importing the package registers its credentials blocks with Prefect (Prefect imports it through
the ``prefect.collections`` entry point).
"""

from prefect_sessions._version import __version__
from prefect_sessions.voiceflow.credentials import VoiceflowCredentials

__all__ = ["VoiceflowCredentials", "__version__"]
