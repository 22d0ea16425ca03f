"""What a request to a model endpoint will cost in tokens, estimated before it is sent.

The endpoint counts a request against its token quota before answering (the prompt and the
completion it may take), so the engine must know the cost when it paces. The text is not
tokenized here (a tokenizer per model family is a heavy dependency, and the endpoint may be any
model): about four characters make a token in English (OpenAI's rule of thumb), corrected by
what the endpoint reports. Each answer's ``usage.prompt_tokens`` against the estimate for its
prompt moves the ratio, so the estimate converges on the endpoint's own count.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable

#: Characters per token before any answer has corrected it.
CHARACTERS_PER_TOKEN = 4.0
#: Tokens of framing per message (its role and separators).
PER_MESSAGE = 4
#: How far one answer moves the learned ratio.
SMOOTHING = 0.2


class TokenEstimate:
    """Estimates prompt tokens from characters, calibrated on the endpoint's usage reports."""

    def __init__(self) -> None:
        self._ratio = 1.0
        self._lock = threading.Lock()

    def raw(self, texts: Iterable[str]) -> float:
        """The uncalibrated estimate of a prompt made of ``texts``."""
        return sum(PER_MESSAGE + len(text) / CHARACTERS_PER_TOKEN for text in texts)

    def prompt(self, texts: Iterable[str]) -> int:
        """The calibrated estimate of a prompt made of ``texts``."""
        with self._lock:
            ratio = self._ratio
        return math.ceil(self.raw(texts) * ratio)

    def learn(self, raw_estimate: float, reported: int) -> None:
        """The endpoint counted ``reported`` prompt tokens where :meth:`raw` said
        ``raw_estimate``."""
        if raw_estimate <= 0 or reported <= 0:
            return
        seen = min(4.0, max(0.25, reported / raw_estimate))
        with self._lock:
            self._ratio += SMOOTHING * (seen - self._ratio)

    @property
    def ratio(self) -> float:
        with self._lock:
            return self._ratio
