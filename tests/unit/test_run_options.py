"""One run's options, validated once where they enter."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from prefect_sessions.run_options import LAST, SHARD_DEPLOYMENT, RunOptions, invalid_options


def test_options_not_given_take_their_defaults_and_the_suite_decides_the_rest():
    options = RunOptions.of(suite_path="s.yaml", rate=None, concurrency=None, tags=None)
    assert (options.baseline, options.shard_deployment, options.chunk_size) == (
        LAST,
        SHARD_DEPLOYMENT,
        100,
    )
    assert options.concurrency_for(16) == 16
    assert RunOptions.of(suite_path="s.yaml", concurrency=3).concurrency_for(16) == 3


def test_a_flow_s_explicit_none_keeps_its_meaning():
    # A flow passes every parameter: None for the baseline means no comparison, and for the
    # shard deployment the flow's own task runner.
    options = RunOptions.model_validate(
        {"suite_path": "s.yaml", "baseline": None, "shard_deployment": None, "tags": None}
    )
    assert (options.baseline, options.shard_deployment, options.tags) == (None, None, ())


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"rate": -1}, "rate: Input should be greater than 0"),
        ({"max_share": 1.5}, "max_share: Input should be less than or equal to 1"),
        ({"concurrency": 0}, "concurrency: Input should be greater than or equal to 1"),
        ({"base_url": "ftp://x"}, "base_url: String should match pattern"),
        ({"chunk_size": 10_001}, "chunk_size:"),
        ({"shards": 65}, "shards:"),
        ({"run_key": "x" * 201}, "run_key:"),
        ({"tags": ["no spaces"]}, "tags.0:"),
        ({"fail_on": "sometimes"}, "fail_on:"),
    ],
)
def test_an_option_out_of_bounds_is_one_line_naming_it(given, named):
    with pytest.raises(ValidationError) as caught:
        RunOptions.of(suite_path="s.yaml", **given)
    line = invalid_options(caught.value)
    assert named in line
    assert "\n" not in line


def test_an_unknown_option_is_refused():
    with pytest.raises(ValidationError, match="extra"):
        RunOptions.of(suite_path="s.yaml", concurency=3)


def test_credentials_must_be_a_provider_block():
    with pytest.raises(ValidationError, match="credentials block, not SecretStr"):
        RunOptions.of(suite_path="s.yaml", credentials=SecretStr("key"))


def test_options_are_frozen_and_keyed_once():
    options = RunOptions.of(suite_path="s.yaml")
    with pytest.raises(ValidationError):
        options.rate = 3.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="no run key yet"):
        _ = options.key
    assert options.keyed("night-1").key == "night-1"


def test_the_flow_and_shard_parameters_leave_defaults_to_the_flow():
    options = RunOptions.of(
        suite_path="s.yaml", run_key="n", concurrency=4, tags=["a", "b"], baseline="none"
    ).model_copy(update={"only": frozenset({"y", "x"})})
    assert options.flow_parameters() == {
        "suite_path": "s.yaml",
        "run_key": "n",
        "concurrency": 4,
        "tags": ["a", "b"],
        "baseline": "none",
    }
    assert options.shard_parameters() == {
        "suite_path": "s.yaml",
        "run_key": "n",
        "concurrency": 4,
        "tags": ["a", "b"],
        "only": ["x", "y"],
    }


def test_the_selection_comes_from_the_options():
    options = RunOptions.of(suite_path="s.yaml", tags=["refunds"], ids=["r-*"])
    selection = options.selection()
    assert selection.takes("r-1", ["refunds"])
    assert not selection.takes("r-1", ["other"])
    assert not selection.takes("x-1", ["refunds"])
