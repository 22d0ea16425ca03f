"""``prefect-sessions crawl``: an agent's buttons explored breadth-first, written as a suite.

Every path starts a fresh session and replays its button presses from the launch. A state is
the hash of what the agent said and offered: a path that reaches a state already seen is kept
as a conversation but not explored further (loops end there). Paths stop at an exit criterion
(a reply that matches ``--exit-on``, or the agent ending the conversation), at the depth and at
the count cap; buttons whose label starts with an ignored prefix are not pressed, and buttons
that open a web page never are. The crawl's requests are paced like a run's (``max_share``
leaves the rest of the key's limit to others), and paths that fail are reported, not fatal.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect_sessions.errors import ConfigurationError, PrefectSessionsError
from prefect_sessions.recording.replay import replay
from prefect_sessions.recording.source import Source
from prefect_sessions.recording.suite_text import FlowList, suite_yaml
from prefect_sessions.recording.suite_text import turn as suite_turn
from prefect_sessions.seam.adapter import ConversationFailure
from prefect_sessions.seam.transcripts import RecordedReply, RecordedStep
from prefect_sessions.seam.turns import Reply, Turn


@dataclass(frozen=True)
class CrawlLimits:
    """How far a crawl goes, and what it leaves alone."""

    depth: int = 3
    max_paths: int = 200
    ignore: tuple[str, ...] = ()
    exit_on: tuple[str, ...] = ()
    concurrency: int = 4


@dataclass
class Crawl:
    """What a crawl found: the suite's text, its paths, and what it could not finish."""

    text: str = ""
    paths: list[tuple[str, ...]] = field(default_factory=list)
    loops: int = 0
    unfinished: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    capped: list[str] = field(default_factory=list)


def state_of(reply: Reply) -> str:
    """The state a path reached: what the agent said and offered (loops are detected by it)."""
    seen = json.dumps([reply.messages, reply.buttons, reply.ended], separators=(",", ":"))
    return hashlib.sha256(seen.encode()).hexdigest()


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.casefold()).strip("-") or "button"


def path_id(path: Sequence[str]) -> str:
    """A path's conversation ID, the same on every crawl: its button labels, slugged."""
    if not path:
        return "crawl--start"
    name = "crawl--" + "--".join(_slug(label) for label in path)
    if len(name) <= 120:
        return name
    digest = hashlib.sha256("\x1f".join(path).encode()).hexdigest()[:10]
    return f"{name[:108]}--{digest}"


def _recorded(kind: str, value: Any, reply: Reply) -> RecordedStep:
    return RecordedStep(kind, value, RecordedReply(tuple(reply.messages), tuple(reply.choices)))


class _Crawler:
    def __init__(self, source: Source, limits: CrawlLimits, threshold: float) -> None:
        self.source = source
        self.limits = limits
        self.threshold = threshold
        self.exits = [re.compile(pattern) for pattern in limits.exit_on]
        self.found = Crawl()
        self.conversations: list[dict[str, Any]] = []
        self.seen: set[str] = set()

    def pressable(self, reply: Reply) -> list[str]:
        ignored = tuple(prefix.casefold() for prefix in self.limits.ignore)
        return [
            label
            for label in dict.fromkeys(reply.choices)  # each label once, in order
            if not label.casefold().startswith(ignored)
        ]

    def leaf(self, reply: Reply) -> bool:
        return reply.ended or any(p.search(reply.text) for p in self.exits)

    async def walk(self, path: tuple[str, ...], gate: asyncio.Semaphore, adapter: Any) -> Any:
        turns = [Turn(kind="launch"), *(Turn(kind="button", value=label) for label in path)]
        async with gate:
            try:
                answers = await replay(adapter, path_id(path), turns)
            except (ConversationFailure, PrefectSessionsError) as exc:
                self.found.unfinished.append((path, str(exc)))
                return None
        steps = [_recorded("launch", None, answers[0].reply)]
        steps += [
            _recorded("button", label, answer.reply)
            for label, answer in zip(path, answers[1:], strict=True)
        ]
        self.conversations.append(
            {
                "id": path_id(path),
                "tags": FlowList(["crawled"]),
                "turns": [suite_turn(step, self.threshold) for step in steps],
            }
        )
        self.found.paths.append(path)
        return answers[-1].reply

    async def run(self) -> Crawl:
        factory = self.source.provider.adapter
        gate = asyncio.Semaphore(self.limits.concurrency)
        async with factory(self.source.settings) as adapter:
            frontier: list[tuple[tuple[str, ...], Reply]] = []
            first = await self.walk((), gate, adapter)
            if first is None:
                return self.found
            self.seen.add(state_of(first))
            frontier.append(((), first))
            for depth in range(1, self.limits.depth + 1):
                children = [
                    (*path, label)
                    for path, reply in frontier
                    if not self.leaf(reply)
                    for label in self.pressable(reply)
                ]
                room = self.limits.max_paths - len(self.found.paths)
                if len(children) > room:
                    self.found.capped.append(
                        f"stopped at the count cap ({self.limits.max_paths} paths): "
                        f"{len(children) - room} paths at depth {depth} were not explored"
                    )
                    children = children[:room]
                replies = await asyncio.gather(
                    *(self.walk(child, gate, adapter) for child in children)
                )
                frontier = []
                for child, reply in zip(children, replies, strict=True):
                    if reply is None:
                        continue
                    state = state_of(reply)
                    if state in self.seen:
                        self.found.loops += 1  # a state reached before: not explored again
                        continue
                    self.seen.add(state)
                    frontier.append((child, reply))
                if self.found.capped:
                    return self.found
            deeper = sum(len(self.pressable(r)) for _, r in frontier if not self.leaf(r))
            if deeper:
                self.found.capped.append(
                    f"reached the depth ({self.limits.depth}): {deeper} buttons deeper were not "
                    "pressed (--depth explores further)"
                )
        return self.found


async def crawl(source: Source, limits: CrawlLimits, *, name: str, threshold: float) -> Crawl:
    """Explore ``source``'s agent by its buttons and write the paths as a suite named ``name``."""
    if "button" not in source.provider.turn_kinds:
        raise ConfigurationError(
            f"{source.provider.name} offers no buttons to press: crawl a provider whose agents "
            "offer choices (voiceflow)"
        )
    crawler = _Crawler(source, limits, threshold)
    found = await crawler.run()
    if crawler.conversations:
        crawler.conversations.sort(key=lambda c: (len(c["turns"]), c["id"]))
        header = (
            f"Crawled by prefect-sessions crawl: {len(found.paths)} button paths of "
            f"{source.provider.name}'s agent, breadth-first to depth {limits.depth}.\n"
            "Each path starts a fresh session. Review it, then commit it."
        )
        suite = {"name": name, **source.suite_fields, "embeddings": "offline"}
        found.text = suite_yaml(header, suite, crawler.conversations)
    return found
