"""Judge calls at a model endpoint's limit: requests and tokens, both published.

The emulator's model (its own process) is limited as OpenAI limits a model: ``R`` requests and
``T`` tokens per window, each a bucket refilled continuously, published in
``x-ratelimit-*-requests`` and ``-tokens`` on every answer. ``N`` judge calls (a rubric and a
transcript each, ``max_tokens`` as a judge asks) go through :class:`ModelClient` (the engine:
paced by both quotas, retried on 429), ``concurrency`` at once. The client is not told the
limit: it reads the headers.

The ideal makespan is what the tighter budget allows once its full bucket is spent: the
requests beyond ``R`` at ``R`` per window, and the tokens beyond ``T`` at ``T`` per window (each
call's tokens counted as the endpoint counts them: its ``usage.prompt_tokens`` plus
``max_tokens``).

    .venv/bin/python -m benchmarks.judge_limit [--calls 400] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import math
from typing import Any

from pydantic import SecretStr

from benchmarks.common import emit, emulator_process, goal, now
from prefect_sessions.conversation.judging import VERDICT_SCHEMA, judge_messages
from prefect_sessions.http.pacers import Pacers
from prefect_sessions.http.tally import tallying
from prefect_sessions.llm.credentials import ModelCredentials

MODEL = "gpt-4o-mini"
MAX_TOKENS = 64
#: Requests and tokens per window: the tokens are the tighter budget, as for a judge on a
#: small tier (each call costs about 190 tokens, so the tokens allow about 16 calls a second
#: against 24 requests).
LIMIT = "240/10s tokens=30000"


def _prompt(number: int) -> list[dict[str, str]]:
    reply = f"Your balance is {number} euros. " * (1 + number % 4)
    return judge_messages(
        'The agent gives the balance as an "amount of money".',
        [("User", "What is my balance?"), ("Agent", reply)],
        whole=False,
    )


async def _run(url: str, calls: int, concurrency: int) -> dict[str, Any]:
    credentials = ModelCredentials(
        base_url=f"{url}/openai/v1",
        api_key=SecretStr("sk-benchmark-key"),
        model=MODEL,
        max_tokens=MAX_TOKENS,
    )
    spent: list[int] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(calls):
        queue.put_nowait(number)
    async with credentials.get_client(pacers=Pacers()) as model:

        async def worker() -> None:
            while not queue.empty():
                number = queue.get_nowait()
                answer = await model.chat(_prompt(number), schema=VERDICT_SCHEMA)
                spent.append(answer.prompt_tokens + MAX_TOKENS)

        with tallying() as tally:
            started = now()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = now() - started
    return {
        "elapsed": elapsed,
        "tokens": sum(spent),
        "attempts": tally.requests,
        "refused": tally.rate_limited,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    requests, rest = LIMIT.split("/", 1)
    window = float(rest.split("s", 1)[0])
    tokens = int(rest.split("tokens=", 1)[1])
    with emulator_process(extra=["--model-limit", LIMIT]) as emulator:
        measured = asyncio.run(_run(emulator.url, args.calls, args.concurrency))
    by_requests = max(0, args.calls - int(requests)) * window / int(requests)
    by_tokens = max(0, measured["tokens"] - tokens) * window / tokens
    ideal = max(by_requests, by_tokens)
    ratio = measured["elapsed"] / ideal if ideal else math.inf
    share = measured["refused"] / measured["attempts"]
    row = {
        "limit": LIMIT,
        "calls": args.calls,
        "tokens_counted": measured["tokens"],
        "tighter": "tokens" if by_tokens >= by_requests else "requests",
        "ideal_s": round(ideal, 2),
        "makespan_s": round(measured["elapsed"], 2),
        "ratio_to_ideal": round(ratio, 3),
        "attempts": measured["attempts"],
        "answered_429": measured["refused"],
        "share_429": round(share, 4),
    }
    report = {
        "rows": [row],
        "goals": [
            goal("judge calls answered 429 < 2%", f"{share:.2%}", share < 0.02),
            goal("makespan <= 1.10 x the tighter budget's ideal", f"{ratio:.3f}", ratio <= 1.10),
        ],
    }
    emit("Judge calls at a model's requests and tokens limits", report, list(row), args.json)


if __name__ == "__main__":
    main()
