"""``prefect-sessions emulator``: serve the emulator from a shell with one command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import uvicorn

from prefect_sessions.emulator.app import create_app
from prefect_sessions.emulator.config import DEFAULT_MODEL_LIMIT, FAULT_KINDS, EmulatorConfig
from prefect_sessions.emulator.providers import emulated_apis
from prefect_sessions.emulator.server import LOOPBACK, bind, uvicorn_config


def add_arguments(emulator: argparse.ArgumentParser) -> None:
    """The ``emulator`` command's options."""
    emulator.add_argument("--host", default=LOOPBACK, help="address to listen on (127.0.0.1)")
    emulator.add_argument("--port", type=int, default=8787, help="port to listen on (8787)")
    shape = (
        "; a limit is COUNT/WINDOW or inflight=N, then any of fixed|sliding|bucket, burst=N, "
        "publish=headers|retry-after|none, scope=key|endpoint, or 'off'"
    )
    for api in emulated_apis():
        emulator.add_argument(
            f"--{api.name}-limit",
            default=api.default_limit,
            metavar="LIMIT",
            dest=f"limit_{api.name}",
            help=api.limit_help + (shape if api is emulated_apis()[0] else ""),
        )
    emulator.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    emulator.add_argument("--jitter-ms", type=float, default=0.0, help="latency spread, +/-")
    emulator.add_argument(
        "--vectara-think-ms",
        type=float,
        default=250.0,
        help="how long the scripted Vectara agent thinks per answer; its session is running "
        "(a second input gets 409) from the input's arrival until the answer ends (250)",
    )
    emulator.add_argument(
        "--model-limit",
        default=str(DEFAULT_MODEL_LIMIT),
        metavar="REQUESTS/WINDOW tokens=N",
        help="the emulated model's requests and tokens per window, with OpenAI's x-ratelimit-* "
        f"headers, or 'off' ({DEFAULT_MODEL_LIMIT})",
    )
    emulator.add_argument(
        "--faults",
        default=None,
        metavar="KIND=RATE,...",
        help=f"fault probabilities per request; kinds: {', '.join(FAULT_KINDS)}",
    )
    emulator.add_argument("--seed", type=int, default=0, help="seed for faults and jitter (0)")
    emulator.add_argument(
        "--slow-seconds", type=float, default=35.0, help="how long a 'slow' fault holds (35)"
    )
    emulator.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="accept only these keys (repeat); default: any non-empty key",
    )
    emulator.add_argument("--agent", default=None, metavar="FILE", help="agent script (YAML)")
    emulator.add_argument("--log-level", default="warning", help="uvicorn log level (warning)")


def serve(args: argparse.Namespace) -> int:
    """Run the emulator as the parsed options say, until interrupted; the exit status."""
    try:
        config = EmulatorConfig.from_options(
            api_keys=args.api_keys,
            limits={api.name: getattr(args, f"limit_{api.name}") for api in emulated_apis()},
            faults=args.faults,
            agent_file=args.agent,
            latency_ms=args.latency_ms,
            jitter_ms=args.jitter_ms,
            vectara_think_ms=args.vectara_think_ms,
            model_limit=args.model_limit,
            seed=args.seed,
            slow_seconds=args.slow_seconds,
        )
        sock = bind(args.port, args.host)
    except (ValueError, OSError) as exc:
        print(f"prefect-sessions emulator: {exc}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    print(
        f"prefect-sessions emulator on http://{host}:{port} "
        f"({', '.join(api.title for api in emulated_apis())}; admin under /_emulator). "
        "Ctrl+C stops it.",
        flush=True,
    )
    server = uvicorn.Server(uvicorn_config(create_app(config), log_level=args.log_level))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``prefect-sessions emulator [options]`` and ``python -m prefect_sessions.emulator``."""
    parser = argparse.ArgumentParser(
        prog="prefect-sessions emulator",
        description=(
            "Serve local emulators of the providers' APIs "
            f"({', '.join(api.title for api in emulated_apis())}) on one port. Any non-empty "
            "API key works unless --api-key is given."
        ),
    )
    add_arguments(parser)
    return serve(parser.parse_args(argv))
