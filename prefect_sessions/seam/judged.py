"""What a judged expectation asks: a rubric for a model to grade by, or references to be similar
to. How they are judged is :mod:`prefect_sessions.conversation.judging`'s business.

In a suite file::

    expect:
      - judge: {rubric: "The reply gives the balance as an amount of money.", threshold: 0.7}
      - similar: {to: ["Your balance is 42 euros."], threshold: 0.8}

A judged expectation holds when the model's verdict passes and its score reaches the threshold;
a similarity holds when any reference reaches it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: promptfoo's default for ``similar``; a judge's default is the middle of its scale.
DEFAULT_SIMILARITY = 0.75
DEFAULT_JUDGE_THRESHOLD = 0.5


def _threshold(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"threshold must be a number from 0 to 1 (got {value!r})")
    return value


class JudgeSpec(BaseModel):
    """``judge:``: a model grades the reply (on a turn) or the transcript (on a conversation)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rubric: str = Field(min_length=1, max_length=4000)
    threshold: float = DEFAULT_JUDGE_THRESHOLD
    model: str | None = Field(
        default=None, min_length=1, description="Another model of the same endpoint, for this one."
    )

    _checked = field_validator("threshold", mode="before")(_threshold)

    @model_validator(mode="before")
    @classmethod
    def _rubric_alone(cls, data: Any) -> Any:
        return {"rubric": data} if isinstance(data, str) else data

    def describe(self) -> str:
        return f"judge {self.rubric!r} (threshold {self.threshold:g})"


class SimilarSpec(BaseModel):
    """``similar:``: the reply means the same as one of the references."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    to: tuple[str, ...] = Field(min_length=1, max_length=20)
    threshold: float = DEFAULT_SIMILARITY

    _checked = field_validator("threshold", mode="before")(_threshold)

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("to")
    @classmethod
    def _not_blank(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not reference.strip() for reference in value):
            raise ValueError("a reference to be similar to cannot be blank")
        return value

    def describe(self) -> str:
        shown = self.to[0] if len(self.to) == 1 else f"{self.to[0]!r} or {len(self.to) - 1} more"
        return f"similar to {shown!r} (threshold {self.threshold:g})"


#: What a simulated user says when it has nothing left to say (promptfoo's marker).
STOP_MARKER = "###STOP###"


class SimulateSpec(BaseModel):
    """``simulate:``: a model plays the user, turn by turn, until the goal is met, the turn
    budget is spent or it says the stop marker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    persona: str = Field(min_length=1, max_length=2000)
    goal: str = Field(min_length=1, max_length=2000)
    facts: tuple[str, ...] = Field(
        default=(), max_length=50, description="What the user knows and tells when asked."
    )
    max_turns: int = Field(default=8, ge=1, le=50, description="The most user turns it takes.")
    opening: str | None = Field(
        default=None, min_length=1, description="The user's first turn, word for word."
    )
    stop: str = Field(default=STOP_MARKER, min_length=3, max_length=50)

    def describe(self) -> str:
        return f"simulated user ({self.goal!r}, at most {self.max_turns} turns)"


class Judgement(BaseModel):
    """One judged expectation's outcome, as reports show it.

    ``error`` is set when no verdict could be had (the model's answer could not be read, or the
    endpoint failed): the expectation neither passed nor failed, and the conversation errors.
    """

    model_config = ConfigDict(frozen=True)

    kind: str
    describe: str
    passed: bool = False
    score: float | None = None
    threshold: float
    reason: str = ""
    error: str | None = None
    cached: bool = False

    def failure(self) -> str | None:
        """Why it does not hold, as a turn's failure line; ``None`` when it holds."""
        if self.error is not None:
            return f"{self.describe}: no verdict ({self.error})"
        if self.passed:
            return None
        score = "no score" if self.score is None else f"score {self.score:.2f}"
        return f"{self.describe}: {score} against {self.threshold:g}: {self.reason}"


__all__ = [
    "DEFAULT_JUDGE_THRESHOLD",
    "DEFAULT_SIMILARITY",
    "STOP_MARKER",
    "JudgeSpec",
    "Judgement",
    "SimilarSpec",
    "SimulateSpec",
]
