"""The UI's run forms: each flow's parameter schema is kept byte for byte.

``parameter_schemas.json`` was written from the flows before their options became one model
(:class:`prefect_sessions.run_options.RunOptions`): the forms must show the same typed fields, with
the same bounds, defaults and descriptions, whatever the code behind them. Regenerate it only for
a change to the form that is meant (issue 27 meant three: the batch and shard flows'
``judge_cache``, and the triggered flow's ``judge``/``similar`` expectation kinds and ``stopped``
output kind; issue 28 meant two: the Voiceflow block's ``analytics_url`` and the ``no_reply``
expectation kind).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.utilities.callables import parameter_schema

from prefect_sessions.flows import (
    batch_conversations,
    batch_conversations_shard,
    session_maintenance,
    triggered_conversation,
)

KEPT = json.loads((Path(__file__).parent / "parameter_schemas.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "flow",
    [batch_conversations, batch_conversations_shard, triggered_conversation, session_maintenance],
    ids=lambda flow: flow.name,
)
def test_the_run_form_is_unchanged(flow):
    schema = parameter_schema(flow).model_dump(mode="json")
    assert json.dumps(schema, indent=1, sort_keys=True) == json.dumps(
        KEPT[flow.name], indent=1, sort_keys=True
    )
