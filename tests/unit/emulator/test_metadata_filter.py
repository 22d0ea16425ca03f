"""Vectara's metadata filter as the emulator evaluates it: the vendor's documented examples
select what they say, SQL's rules for missing fields and mixed types hold, and a filter that does
not parse says where."""

from __future__ import annotations

import re
from typing import Any

import pytest

from prefect_sessions.emulator.providers.metadata_filter import FilterSyntaxError, compile_filter

ROWS: dict[str, dict[str, Any]] = {
    "ann": {"user_role": "premium", "tier": 3, "region": "us", "user": "ann@example.com"},
    "bob": {"user_role": "free", "tier": 1, "region": "us", "user": "bob@other.org"},
    "cy": {"user_role": "premium", "tier": "2", "profile": {"country": "US"}, "user_ids": [1, 7]},
    "dee": {"tier": None, "region": "eu", "user_ids": [2]},
}


def selected(expression: str) -> set[str]:
    matches = compile_filter(expression)
    return {name for name, metadata in ROWS.items() if matches(metadata)}


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        # the examples in the parameter's description (Vectara's OpenAPI, 2026-07)
        ("user_role = 'premium'", {"ann", "cy"}),
        ("tier >= 2 AND region = 'us'", {"ann"}),
        ("user LIKE '%@example.com'", {"ann"}),
        ("tier IN ('premium', 'enterprise')", set()),
        ("tier IS NULL", {"dee"}),
        ("\"profile.country\" = 'US'", {"cy"}),
        ("1 IN user_ids", {"cy"}),
        # the rest of the grammar
        ("user_role = 'premium' AND tier >= 2", {"ann"}),  # "2" is a string: no match
        ("region = 'eu' OR (tier < 2 AND NOT user_role = 'premium')", {"bob", "dee"}),
        ("tier IS NOT NULL", {"ann", "bob", "cy"}),
        ("user NOT LIKE '%@example.com'", {"bob"}),
        ("region <> 'us'", {"dee"}),
        ("region != 'us'", {"dee"}),
        ("7 NOT IN user_ids", {"dee"}),
        ("user_role = 'it''s'", set()),
        ("tier IN (1, 3)", {"ann", "bob"}),
        ("tier NOT IN (1, 3)", {"cy"}),  # a missing or null field is in no list, nor out of one
        ("TRUE = TRUE", set(ROWS)),
    ],
)
def test_the_documented_examples_select_what_they_say(expression: str, names: set[str]) -> None:
    assert selected(expression) == names


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("tier >", "expected a value, found the end"),
        ("tier = 'a' AND", "expected a value, found the end"),
        ("(tier = 1", "expected ')', found the end"),
        ("tier 1", "expected a comparison operator, found '1' at position 6"),
        ("tier = 1 region", "expected an operator or the end of the filter, found 'region'"),
        ("tier ~ 1", "unexpected character at position 6"),
        ("user LIKE 5", "expected a quoted pattern, found '5'"),
        ("tier NOT = 1", "expected IN or LIKE after NOT"),
    ],
)
def test_a_filter_that_does_not_parse_says_where(expression: str, message: str) -> None:
    with pytest.raises(FilterSyntaxError, match=re.escape(message)):
        compile_filter(expression)
