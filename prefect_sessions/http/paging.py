"""One cursor pager for every provider's lists: fetch a page, yield its items, follow the cursor.

A provider says how to fetch one page (``fetch(cursor) -> (items, next cursor)``); the pager stops
when there is no next cursor and refuses a cursor it has followed before, which would page forever.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from typing import TypeVar

from prefect_sessions.errors import ProviderError

T = TypeVar("T")
C = TypeVar("C", bound=Hashable)


async def follow_cursor(
    fetch: Callable[[C | None], Awaitable[tuple[Sequence[T], C | None]]],
    *,
    provider: str,
    operation: str,
    first: C | None = None,
    cursor_name: str = "page cursor",
) -> AsyncIterator[T]:
    """Every item of every page, in order, starting at the page of ``first``.

    Raises:
        ProviderError: the server handed back a cursor it had handed back before.
    """
    seen: set[C] = set()
    cursor = first
    while True:
        items, following = await fetch(cursor)
        for item in items:
            yield item
        if following is None:
            return
        if following in seen:
            raise ProviderError(
                provider=provider,
                operation=operation,
                detail=f"the server returned a {cursor_name} it had returned before; "
                "stopped paging",
            )
        seen.add(following)
        cursor = following
