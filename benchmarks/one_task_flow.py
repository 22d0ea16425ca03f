"""The start-up benchmark's yardstick: Prefect's own one-task flow sending the requests of a
one-conversation suite (start a Voiceflow session, then the launch turn), with plain httpx.

Run: ``python -m benchmarks.one_task_flow URL`` with ``PREFECT_API_URL`` set.
"""

from __future__ import annotations

import sys

import httpx
from prefect import flow, task

KEY = "VF.DM.benchmark-yardstick-0123456789.key"


@task
def converse(url: str) -> str:
    project = "bench-project"
    with httpx.Client(base_url=url, timeout=30.0) as client:
        started = client.post(
            f"/v4/project/{project}/environment/main/session",
            json={"userID": "yardstick"},
            headers={"authorization": KEY, "projectID": project},
        )
        reply = client.post(
            "/v4/interact",
            json={"action": {"type": "launch"}},
            headers={"authorization": started.json()["sessionKey"]},
        )
    return str(reply.json()["traces"][0]["type"])


@flow
def one_conversation(url: str) -> str:
    return converse(url)


if __name__ == "__main__":
    print(one_conversation(sys.argv[1]))
