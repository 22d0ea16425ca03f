"""The emulator's model: a small deterministic judge, a simulated user and embeddings, so that
suites with judged expectations and simulated users run offline (tests, ``make demo``).

It answers what prefect-sessions' prompts ask (:mod:`prefect_sessions.conversation.judging`),
reading the tagged sections those prompts are made of, and answers anything else with a fixed
sentence. It is lexical, not clever, and documented so that a suite can be written against it:

- **Judge** (a prompt with ``<rubric>`` and ``<conversation>``): only the agent's lines are
  judged. When the rubric puts phrases in double quotes, the score is the share of them the
  agent said; otherwise the share of the rubric's content words (four letters or more, or
  numbers, less common words) the agent used, a word matching on its first five letters. The
  verdict passes at 0.5. Its reason names what was found and what was missing. Asked for JSON by
  schema or as an object, it answers bare JSON; asked for nothing, it answers the JSON in a
  fenced block after a sentence, as chat models often do.
- **Simulated user** (a prompt with ``<goal>``): its first turn asks for the goal (or says the
  ``<opening>``), each later turn tells the next of its ``<facts>``, and when it has nothing left
  to say it answers the ``<stop>`` marker.
- **Embeddings**: each text is hashed into 256 buckets by its words (first five letters) and
  normalised, so texts sharing words are close and unrelated ones are near 0.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence

#: Words a rubric uses that say nothing about what the agent must say.
COMMON = frozenset(
    [
        "about",
        "above",
        "after",
        "again",
        "agent",
        "agent's",
        "answer",
        "answers",
        "asked",
        "asks",
        "because",
        "before",
        "being",
        "below",
        "between",
        "clear",
        "clearly",
        "could",
        "does",
        "doing",
        "during",
        "each",
        "either",
        "every",
        "from",
        "gives",
        "goal",
        "given",
        "has",
        "have",
        "into",
        "just",
        "like",
        "mention",
        "mentions",
        "more",
        "most",
        "must",
        "need",
        "needs",
        "only",
        "other",
        "over",
        "reply",
        "replies",
        "response",
        "says",
        "should",
        "some",
        "such",
        "than",
        "that",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "user",
        "user's",
        "very",
        "what",
        "when",
        "where",
        "which",
        "while",
        "will",
        "with",
        "would",
        "your",
    ]
)
DIMENSIONS = 256
PASS_AT = 0.5
_WORD = re.compile(r"[A-Za-z0-9']+")
_QUOTED = re.compile(r'"([^"]+)"')


def _section(text: str, tag: str) -> str | None:
    match = re.search(rf"<{tag}>\n?(.*?)\n?</{tag}>", text, flags=re.DOTALL)
    return match.group(1) if match else None


def _stem(word: str) -> str:
    return word.lower()[:5]


def _terms(rubric: str) -> list[str]:
    seen: list[str] = []
    for word in _WORD.findall(rubric):
        lowered = word.lower()
        wanted = (len(lowered) >= 4 or lowered.isdigit()) and lowered not in COMMON
        if wanted and _stem(lowered) not in (_stem(s) for s in seen):
            seen.append(lowered)
    return seen


def _agent_lines(conversation: str) -> str:
    lines = [line for line in conversation.splitlines() if line.startswith("Agent:")]
    return _unescape("\n".join(line.removeprefix("Agent:") for line in lines))


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def judge(rubric: str, conversation: str) -> dict[str, object]:
    """The verdict ``{reason, pass, score}`` of ``rubric`` on ``conversation``."""
    said = _agent_lines(conversation).lower()
    quoted = [phrase.lower() for phrase in _QUOTED.findall(rubric)]
    if quoted:
        found = [phrase for phrase in quoted if phrase in said]
        missing = [phrase for phrase in quoted if phrase not in said]
    else:
        stems = {_stem(word) for word in _WORD.findall(said)}
        terms = _terms(rubric)
        found = [term for term in terms if _stem(term) in stems]
        missing = [term for term in terms if _stem(term) not in stems]
    total = len(found) + len(missing)
    score = round(len(found) / total, 3) if total else 0.0
    reason = (
        f"The agent said {', '.join(repr(f) for f in found) or 'none of the terms'}"
        + (f"; missing {', '.join(repr(m) for m in missing)}" if missing else "")
        + "."
    )
    return {"reason": reason, "pass": score >= PASS_AT, "score": score}


def simulated_user(system: str, prompt: str) -> str:
    """The simulated user's next turn."""
    goal = (_section(system, "goal") or "").strip()
    facts = [
        line.strip().removeprefix("- ").strip()
        for line in (_section(system, "facts") or "").splitlines()
        if line.strip()
    ]
    stop = (_section(system, "stop") or "###STOP###").strip()
    opening = (_section(system, "opening") or "").strip()
    conversation = _section(prompt, "conversation") or ""
    turns = sum(1 for line in conversation.splitlines() if line.startswith("User:"))
    if turns == 0:
        return opening or f"Hello, I would like to {goal.rstrip('.')}."
    if turns - 1 < len(facts):
        return facts[turns - 1]
    return stop


def answer(messages: Sequence[dict[str, object]], response_format: str | None) -> str:
    """The model's answer to a chat: a verdict, a user's turn, or a fixed sentence."""
    system = "\n".join(
        _text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
    )
    prompt = "\n".join(_text(m.get("content")) for m in messages if m.get("role") == "user")
    rubric, conversation = _section(prompt, "rubric"), _section(prompt, "conversation")
    if rubric is not None and conversation is not None:
        verdict = json.dumps(judge(rubric, conversation))
        if response_format in ("json_schema", "json_object"):
            return verdict
        return f"Here is my verdict:\n```json\n{verdict}\n```"
    if _section(system, "goal") is not None:
        return simulated_user(system, prompt)
    last = prompt.strip().splitlines()[-1] if prompt.strip() else ""
    return f"This is the emulator's model. You said: {last[:200]}"


def _text(content: object) -> str:
    """A message's content as text (a string, or a list of ``{type: text, text}`` parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def embed(text: str) -> list[float]:
    """A text's embedding: its words hashed into :data:`DIMENSIONS` buckets, normalised."""
    vector = [0.0] * DIMENSIONS
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(_stem(word).encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "little") % DIMENSIONS
        vector[bucket] += 1.0 if digest[4] % 2 else -1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [round(x / norm, 6) for x in vector]
