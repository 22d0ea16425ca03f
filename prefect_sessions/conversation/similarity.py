"""Embeddings for ``similar:`` expectations: offline by default, or the model endpoint's.

Offline, the embeddings come from `wordllama <https://github.com/dleemiller/WordLlama>`_, whose
wheel ships its weights and tokenizer (the ``similarity`` extra). Its loader still looks for a
hub when a file is not where it expects it, so the model is built here from the package's own
files, with nothing downloaded: a machine without a network scores the same. Its scores are
lower for paraphrases than a large embedding model's (0.3 to 0.6 where a model gives 0.8): set
thresholds by what it gives the replies that should pass, or use the endpoint's
``/v1/embeddings`` (``embeddings: judge_model`` in the suite, with the block's
``embedding_model``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prefect_sessions.errors import ConfigurationError

if TYPE_CHECKING:
    from prefect_sessions.llm.client import ModelClient

#: The weights and tokenizer in wordllama's wheel.
WORDLLAMA_WEIGHTS = "weights/l2_supercat_256.safetensors"
WORDLLAMA_TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"
INSTALL = "pip install 'prefect-sessions[similarity]'"


class Embedder(Protocol):
    """Scores a text against references: cosine similarity of their embeddings."""

    async def similarities(self, text: str, references: Sequence[str]) -> tuple[list[float], int]:
        """The similarity of ``text`` to each reference, and the tokens it cost (0 offline)."""
        ...


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


@functools.cache
def offline_model() -> Any:
    """wordllama's model, from its package's files, loaded once per process.

    Raises:
        ConfigurationError: wordllama is not installed, or its files are not in its package.
    """
    try:
        import wordllama
        from safetensors import safe_open
        from wordllama import WordLlama
        from wordllama.inference import WordLlamaInference
    except ImportError:
        raise ConfigurationError(
            f"similar: the offline embeddings need wordllama: {INSTALL} (or set "
            "'embeddings: judge_model' to use the model endpoint's)"
        ) from None
    root = Path(wordllama.__file__).parent
    weights, tokenizer = root / WORDLLAMA_WEIGHTS, root / WORDLLAMA_TOKENIZER
    missing = [str(path) for path in (weights, tokenizer) if not path.is_file()]
    if missing:
        raise ConfigurationError(
            f"similar: wordllama's offline files are missing ({', '.join(missing)}): reinstall "
            f"it ({INSTALL}), or set 'embeddings: judge_model'"
        )
    with safe_open(str(weights), framework="np", device="cpu") as handle:
        embedding = handle.get_tensor("embedding.weight")
    return WordLlamaInference(embedding, WordLlama.load_tokenizer(tokenizer), binary=False)


class OfflineEmbedder:
    """wordllama's embeddings, in process."""

    def __init__(self) -> None:
        self._model = offline_model()

    async def similarities(self, text: str, references: Sequence[str]) -> tuple[list[float], int]:
        vectors = self._model.embed([text, *references])
        return [cosine(vectors[0], vector) for vector in vectors[1:]], 0


class EndpointEmbedder:
    """The model endpoint's ``/v1/embeddings``, through the engine (paced, retried, counted)."""

    def __init__(self, model: ModelClient) -> None:
        self._model = model

    async def similarities(self, text: str, references: Sequence[str]) -> tuple[list[float], int]:
        vectors, tokens = await self._model.embeddings([text, *references])
        return [cosine(vectors[0], vector) for vector in vectors[1:]], tokens


__all__ = ["Embedder", "EndpointEmbedder", "OfflineEmbedder", "cosine", "offline_model"]
