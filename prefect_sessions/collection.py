"""What Prefect imports through the package's ``prefect.collections`` entry point: every
registered provider's credentials block (and the model endpoint's, which judges), so that
Prefect can load a saved block by its type's slug
(``Block.load("voiceflow-credentials/my-key")``) in a worker or a server that imported nothing of
ours.

The package itself (``import prefect_sessions``) imports no block until one is used, so that the
command line starts without loading Prefect.
"""

from prefect_sessions.liveavatar.credentials import LiveAvatarCredentials
from prefect_sessions.llm.credentials import ModelCredentials
from prefect_sessions.providers import all_providers
from prefect_sessions.vectara.credentials import VectaraCredentials
from prefect_sessions.voiceflow.credentials import VoiceflowCredentials

# Providers added through the registry's entry points register their blocks too.
for _provider in all_providers():
    _provider.credentials  # noqa: B018 - imported for the registration it does

__all__ = [
    "LiveAvatarCredentials",
    "ModelCredentials",
    "VectaraCredentials",
    "VoiceflowCredentials",
]
