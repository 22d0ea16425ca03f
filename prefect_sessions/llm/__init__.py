"""An OpenAI-compatible model endpoint (OpenAI, Azure OpenAI, vLLM, Ollama, a LiteLLM proxy):
a credentials block and a client for chat completions and embeddings, paced by the same engine
as the providers (requests and tokens, from OpenAI's published headers). It is what judges
expectations and plays simulated users; it is not a conversation provider.

Every public name lives in :mod:`prefect_sessions.llm.api` and is imported on first use.
"""

from typing import TYPE_CHECKING

from prefect_sessions._lazy import lazy_exports

if TYPE_CHECKING:
    from prefect_sessions.llm.api import *  # noqa: F403
else:
    __getattr__, __dir__ = lazy_exports(__name__, "prefect_sessions.llm.api")
