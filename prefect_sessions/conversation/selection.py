"""Which conversations of a suite a run takes: by tag, by id pattern, or those that failed before.

A nightly suite of thousands of conversations costs quota; after a fix, a team reruns only what
failed (``--only-failed RUN_KEY``), or one area of the agent (``--tag refunds``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from fnmatch import fnmatchcase

from pydantic import BaseModel, ConfigDict, Field


class Selection(BaseModel):
    """Conversations a run takes: every one by default.

    A conversation is taken when it has any of ``tags`` (if given), its id matches any of the
    ``ids`` globs (if given; ``refund-*``), and it is among ``only`` (if given: the ids a rerun of
    failures takes). An empty selection is an error, never a run of nothing.
    """

    model_config = ConfigDict(frozen=True)

    tags: tuple[str, ...] = ()
    ids: tuple[str, ...] = Field(default=(), description="Globs on conversation ids.")
    only: frozenset[str] | None = Field(
        default=None, description="Exact ids (those that failed in an earlier run)."
    )
    #: Where ``only`` came from, for messages ("the failures of run 20261203-...").
    only_from: str = ""

    @property
    def everything(self) -> bool:
        return not self.tags and not self.ids and self.only is None

    def takes(self, conversation_id: str, tags: Collection[str]) -> bool:
        if self.tags and not any(tag in tags for tag in self.tags):
            return False
        if self.ids and not any(fnmatchcase(conversation_id, glob) for glob in self.ids):
            return False
        return self.only is None or conversation_id in self.only

    def describe(self) -> str:
        """The selection in the words of the command line."""
        parts = [f"--tag {tag}" for tag in self.tags] + [f"--id '{glob}'" for glob in self.ids]
        if self.only is not None:
            parts.append(self.only_from or f"{len(self.only)} chosen ids")
        return " ".join(parts) or "every conversation"

    def nothing_matched(self, known_tags: Iterable[str]) -> str:
        """Why nothing was selected, and what would have matched."""
        if self.only is not None and not self.only:
            where = self.only_from or "the earlier run"
            return f"{where} has no failed or errored conversation: nothing to rerun"
        tags = sorted(set(known_tags))
        listed = ", ".join(tags) if tags else "none"
        return f"{self.describe()} matches no conversation of the suite (its tags: {listed})"


EVERYTHING = Selection()


def selection_of(
    tags: Iterable[str] | None = None,
    ids: Iterable[str] | None = None,
    only: Iterable[str] | None = None,
    only_from: str = "",
) -> Selection:
    """A selection from the plain lists a flow's parameters hold (``None``: not given)."""
    return Selection(
        tags=tuple(tags or ()),
        ids=tuple(ids or ()),
        only=None if only is None else frozenset(only),
        only_from=only_from,
    )
