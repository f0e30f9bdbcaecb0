"""`python -m listener`: run one listener until SIGTERM or SIGINT.
`python -m listener status`: print the operator's view of the deployment and exit.

Every setting is an environment variable (UTTER_*, see README); the flags below
override the most common ones. Several listeners may run against one database."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import psycopg

from listener import error_reporting, logs, preflight, status
from listener.app import build_listener
from listener.metrics import serve_http, write_file_forever
from listener.settings import ConfigurationError, load
from listener.worker import cancel_and_wait


def parse_flags(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m listener", description=__doc__)
    parser.add_argument("--engine", help="auto | modal | qwen-local | espeak | tone")
    parser.add_argument("--worker-id", help="name in logs and task claims")
    parser.add_argument("--concurrency-generate", type=int)
    parser.add_argument("--concurrency-design-preview", type=int)
    parser.add_argument("--concurrency-clone", type=int)
    parser.add_argument("--metrics-port", type=int, help="serve /healthz and /metrics on 127.0.0.1")
    parser.add_argument("--metrics-file", help="write metrics JSON here every 2 s")
    parser.add_argument("--log-level", default="INFO")
    return vars(parser.parse_args(argv))


async def print_status(argv: list[str]) -> int:
    flags = status.parse_flags(argv)
    try:
        settings = load()
    except ConfigurationError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        report = await status.gather(
            settings.database_url,
            failure_window_minutes=flags.failures_minutes,
            top_users=flags.top_users,
        )
    except psycopg.Error as exc:
        print(f"cannot read the status from the database: {exc}", file=sys.stderr)
        return 1
    print(report.as_json() if flags.json else status.render(report))
    return 0


async def main(argv: list[str]) -> int:
    if argv[:1] == ["status"]:
        return await print_status(argv[1:])
    flags = parse_flags(argv)
    logs.configure(str(flags.pop("log_level")))
    try:
        settings = load(**flags)
        error_reporting.configure(settings)
        await preflight.check(settings)
    except ConfigurationError as exc:
        print(exc, file=sys.stderr)
        return 2
    listener = build_listener(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, listener.stop)

    async def depths() -> list[dict[str, object]]:
        return await listener.db.fetch("queue_metrics")

    extras: list[asyncio.Task[None]] = []
    server = None
    if settings.metrics_file is not None:
        extras.append(
            asyncio.create_task(write_file_forever(settings.metrics_file, listener.metrics, depths))
        )
    if settings.metrics_port is not None:
        server = await serve_http(
            settings.metrics_port, listener.metrics, depths, host=settings.metrics_host
        )
    try:
        await listener.run()
    finally:
        await cancel_and_wait(extras)
        if server is not None:
            server.close()
        await listener.handlers.engine.aclose()
        if listener.checkout is not None:
            await listener.checkout.stripe.aclose()
        if listener.handlers.transcriber is not None:
            await listener.handlers.transcriber.aclose()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
