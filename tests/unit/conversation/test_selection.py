"""Tags, id globs, reruns of failures and repeats: what a run takes from a suite, checked before
any request."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefect_sessions.batch.estimate import estimate
from prefect_sessions.conversation.dataset import iter_conversations, iter_runs
from prefect_sessions.conversation.selection import selection_of
from prefect_sessions.conversation.suite import SuiteError
from prefect_sessions.conversation.suite_file import load_suite

ENV = {"VOICEFLOW_API_KEY": "k"}
SUITE = """\
name: t
provider: voiceflow
connection: {base_url: "http://127.0.0.1:1", api_key_env: VOICEFLOW_API_KEY, project_id: p}
repeat: 2
pass_rate: 0.5
conversations:
  - id: greet
    tags: [smoke]
    repeat: 3
    turns: [{launch: {}}]
  - id: "refund-{{ row.user }}"
    dataset: rows.csv
    tags: [refunds]
    pass_rate: 1
    turns:
      - launch: {}
      - text: "hi"
        expect: [{variable: {name: topic, equals: refund}}]
"""


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "rows.csv").write_text('user,tags\nu1,vip\nu2,\nu3,"vip, smoke"\n')
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    return path


def ids(loaded) -> list[str]:
    return [c.id for c in iter_conversations(loaded)]


def test_tags_come_from_the_conversation_and_its_dataset_row(suite):
    loaded = load_suite(suite, environ=ENV)
    tags = {c.id: c.tags for c in iter_conversations(loaded)}
    assert tags == {
        "greet": ("smoke",),
        "refund-u1": ("refunds", "vip"),
        "refund-u2": ("refunds",),
        "refund-u3": ("refunds", "vip", "smoke"),
    }


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (selection_of(tags=["vip"]), ["refund-u1", "refund-u3"]),
        (selection_of(tags=["smoke"]), ["greet", "refund-u3"]),
        (selection_of(ids=["refund-*"]), ["refund-u1", "refund-u2", "refund-u3"]),
        (selection_of(tags=["vip"], ids=["*u3"]), ["refund-u3"]),
        (selection_of(only=["greet", "refund-u2", "gone"]), ["greet", "refund-u2"]),
    ],
)
def test_a_selection_takes_by_tag_glob_or_rerun(suite, selection, expected):
    loaded = load_suite(suite, environ=ENV, selection=selection)
    assert ids(loaded) == expected
    assert loaded.conversation_count == len(expected)


def test_repeats_and_pass_rates_come_from_the_conversation_or_the_suite(suite):
    loaded = load_suite(suite, environ=ENV)
    runs = [(c.key, c.pass_rate) for c in iter_runs(loaded)]
    assert runs[:4] == [("greet#1", 0.5), ("greet#2", 0.5), ("greet#3", 0.5), ("refund-u1#1", 1.0)]
    assert loaded.run_count == len(runs) == 3 + 3 * 2


def test_a_selection_that_takes_nothing_names_itself_and_the_known_tags(suite):
    with pytest.raises(SuiteError) as caught:
        load_suite(suite, environ=ENV, selection=selection_of(tags=["nightly"]))
    (problem,) = caught.value.problems
    assert "--tag nightly matches no conversation" in problem
    assert "refunds, smoke, vip" in problem
    with pytest.raises(SuiteError, match="--id 'nope-\\*' matches no conversation"):
        load_suite(suite, environ=ENV, selection=selection_of(ids=["nope-*"]))
    with pytest.raises(SuiteError, match="run k1 has no failed or errored conversation"):
        load_suite(suite, environ=ENV, selection=selection_of(only=[], only_from="run k1"))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("repeat: 2", "repeat: 0", "repeat: Input should be greater than or equal to 1"),
        ("pass_rate: 0.5", "pass_rate: 1.5", "pass_rate: Input should be less than or equal to 1"),
        ("tags: [smoke]", "tags: ['smoke test']", "conversations[0].tags[0]: String should match"),
        ("    repeat: 3", "    repeat: 0", "conversations[0].repeat: Input should be greater"),
    ],
    ids=["repeat", "pass_rate", "tag", "conversation-repeat"],
)
def test_bad_repeats_rates_and_tags_are_refused_with_the_field_named(suite, old, new, message):
    suite.write_text(SUITE.replace(old, new, 1))
    with pytest.raises(SuiteError) as caught:
        load_suite(suite, environ=ENV)
    assert any(message in problem for problem in caught.value.problems), caught.value.problems


def test_a_bad_tag_in_a_dataset_row_names_the_row(tmp_path, suite):
    (tmp_path / "rows.csv").write_text("user,tags\nu1,bad!tag\n")
    with pytest.raises(SuiteError, match=r"line 2 of rows.csv: tag 'bad!tag' in the 'tags' column"):
        load_suite(suite, environ=ENV)


def test_the_estimate_counts_every_run_and_the_clean_up(suite):
    loaded = load_suite(suite, environ=ENV)
    # greet: 3 runs x (start + launch) = 6; refunds: 3 rows x 2 runs x (start + 2 turns + a
    # variables read) = 24.
    forecast = estimate(loaded, rate=10, rate_source="given")
    assert (forecast.conversations, forecast.runs, forecast.requests) == (4, 9, 30)
    assert forecast.cleanup_requests == 0
    assert forecast.seconds == 3.0
    suite.write_text(SUITE.replace("repeat: 2\n", "repeat: 2\ncleanup: true\n"))
    with_cleanup = estimate(load_suite(suite, environ=ENV))
    assert (with_cleanup.requests, with_cleanup.cleanup_requests) == (39, 9)
    assert "give --rate" in with_cleanup.lines()[1]


def test_each_run_has_its_place_in_the_run_whatever_the_selection(suite):
    loaded = load_suite(suite, environ=ENV, selection=selection_of(tags=["vip", "smoke"]))
    runs = [(c.key, c.position) for c in iter_runs(loaded)]
    assert runs == [
        ("greet#1", 0),
        ("greet#2", 1),
        ("greet#3", 2),
        ("refund-u1#1", 3),
        ("refund-u1#2", 4),
        ("refund-u3#1", 5),
        ("refund-u3#2", 6),
    ]


def test_only_the_templated_parts_are_rendered_for_each_row(suite, tmp_path):
    suite.write_text(SUITE.replace('"hi"', '"hi {{ row.user }}"'))
    refunds = [c for c in iter_conversations(load_suite(suite, environ=ENV)) if c.row]
    assert [c.turns[1].value for c in refunds] == ["hi u1", "hi u2", "hi u3"]
    # A part without a template is the spec's own, for every row.
    assert refunds[0].turns[0] is refunds[2].turns[0]
    assert refunds[0].turns[1] is not refunds[1].turns[1]


@pytest.fixture
def expanded(monkeypatch) -> list[str]:
    """The suites expanded (to check and count them) while a test runs, in order."""
    from prefect_sessions.conversation import suite_file

    seen: list[str] = []
    real = suite_file._expansion_problems

    def counting(loaded, source):
        seen.append(source)
        return real(loaded, source)

    monkeypatch.setattr(suite_file, "_expansion_problems", counting)
    return seen


def test_a_suite_is_expanded_once_per_process_until_it_or_its_dataset_changes(
    suite, tmp_path, monkeypatch, expanded
):
    from prefect_sessions.conversation import suite_file

    monkeypatch.setattr(suite_file, "_EXPANDED", {})
    first = load_suite(suite, environ=ENV)
    again = load_suite(suite, environ=ENV)
    assert len(expanded) == 1
    assert (again.conversation_count, again.run_count) == (first.conversation_count, 9)
    load_suite(suite, environ=ENV, selection=selection_of(tags=["vip"]))
    assert len(expanded) == 2  # another selection counts otherwise
    (tmp_path / "rows.csv").write_text("user,tags\nu1,bad!tag\n")
    with pytest.raises(SuiteError, match="tag 'bad!tag'"):
        load_suite(suite, environ=ENV)
    assert len(expanded) == 3


def test_a_large_suite_is_remembered_by_the_next_process(suite, tmp_path, monkeypatch, expanded):
    """A resumed run is a new process: the counts of a large suite come from the cache
    directory, keyed by the bytes of the suite and its datasets, instead of a new expansion."""
    from prefect_sessions.conversation import suite_file

    monkeypatch.setattr(suite_file, "REMEMBERED_FROM", 1)
    monkeypatch.setenv("PREFECT_SESSIONS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(suite_file, "_EXPANDED", {})
    first = load_suite(suite, environ=ENV)
    monkeypatch.setattr(suite_file, "_EXPANDED", {})  # as in a new process
    again = load_suite(suite, environ=ENV)
    assert len(expanded) == 1
    assert (again.conversation_count, again.run_count) == (first.conversation_count, 9)
    assert len(list((tmp_path / "cache" / "expanded").iterdir())) == 1
    (tmp_path / "rows.csv").write_text("user,tags\nu1,bad!tag\n")  # other bytes: expanded
    monkeypatch.setattr(suite_file, "_EXPANDED", {})
    with pytest.raises(SuiteError, match="tag 'bad!tag'"):
        load_suite(suite, environ=ENV)
    assert len(expanded) == 2
