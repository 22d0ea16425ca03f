"""A template that only puts row fields in text is rendered by substitution: it must give what
Jinja gives, for any text, field names, spacing and values (hypothesis compares the two)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jinja2 import TemplateError

from prefect_sessions.conversation import dataset

NAMES = ["user", "order", "_private", "items", "keys", "missing", "x1"]
values = st.one_of(
    st.text(max_size=12),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
)
pieces = st.one_of(
    st.text(alphabet="ab {}%#-\n\r\t", max_size=8),
    st.builds(
        lambda left, name, right: "{{" + left + "row." + name + right + "}}",
        st.sampled_from(["", " ", "  ", "\t", "- "]),
        st.sampled_from(NAMES),
        st.sampled_from(["", " ", "  ", "\n", " -"]),
    ),
)


def jinja(text: str, row: dict) -> str | type[Exception]:
    try:
        return dataset._template(text).render(row=row)
    except TemplateError as exc:
        return type(exc)


def ours(text: str, row: dict) -> str | type[Exception]:
    try:
        return dataset._renderer(text)(row)
    except TemplateError as exc:
        return type(exc)


@settings(max_examples=400, deadline=None)
@example(text="hi {{ row.user }}\n", row={"user": "u"})  # Jinja drops a trailing newline
@example(text="a\r\n{{ row.user }}", row={"user": "u"})  # and writes \r\n as \n
@example(text="{{ row.items }}", row={"items": "i"})  # a dict's method, as Jinja reads it
@example(text="{{{row.order}}", row={"order": None})  # "{{" then "{row...": a syntax error
@given(
    text=st.lists(pieces, min_size=1, max_size=5).map("".join),
    row=st.dictionaries(st.sampled_from(NAMES[:-1]), values, max_size=6),
)
def test_substitution_renders_what_jinja_renders(text, row):
    if "{{" not in text and "{%" not in text:
        return  # not a template: kept as written
    assert ours(text, row) == jinja(text, row)


@pytest.mark.parametrize(
    ("text", "substituted"),
    [
        ("refund-{{ row.user }}", True),
        ("{{row.user}} and {{ row.order }}", True),
        ("{{ row.user | upper }}", False),
        ("{{ row.items }}", False),  # a dict's method, as Jinja reads it
        ("hi {{ row.user }}\n", False),  # Jinja drops one trailing newline
        ("{% if row.user %}x{% endif %}", False),
    ],
)
def test_which_templates_are_substituted(text, substituted):
    assert (dataset._row_fields(text) is not None) is substituted
