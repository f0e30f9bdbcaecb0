"""`python -m relay`: the local development stand-in for Supabase Realtime.

python -m relay [serve] [--host HOST] [--port PORT]
    relay private broadcasts from realtime.messages to websocket clients at
    ws://HOST:PORT/realtime/v1/websocket (default 127.0.0.1:54321, or UTTER_RELAY_HOST /
    UTTER_RELAY_PORT); the database is DATABASE_URL or the project cluster; tokens are
    checked with UTTER_JWT_SECRET (default: the Supabase CLI's local secret)

python -m relay watch (--email EMAIL | --user-id UUID) [--url URL] [--expires-in SECONDS]
    print one user's live updates (topic user:<uuid>) as they arrive, through the
    official Python client, with a token minted for that user (local development only)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import uuid
from dataclasses import replace

from devstack import platform
from relay import logs, settings
from relay.logs import log_event
from relay.server import serve
from relay.watch import find_user_id, watch

# Supabase Realtime keeps `realtime.messages` partitions for the days around today;
# the stand-in does the same upkeep, so a long-running local stack keeps storing
# broadcasts (docs/platform.md).
PARTITION_UPKEEP_S = 3600.0


async def keep_message_partitions(database_url: str) -> None:
    while True:
        try:
            await asyncio.to_thread(platform.maintain_realtime_partitions, database_url)
            log_event("partitions_maintained")
        except Exception as exc:  # upkeep failing must not stop the relay; it says why
            log_event("partitions_upkeep_failed", logging.WARNING, error=str(exc))
        await asyncio.sleep(PARTITION_UPKEEP_S)


async def _serve_until_stopped(relay_settings: settings.RelaySettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serve(relay_settings) as relay:
        print(
            f"relay listening on ws://{relay.settings.host}:{relay.port}/realtime/v1/websocket",
            flush=True,
        )
        upkeep = asyncio.create_task(keep_message_partitions(relay_settings.database_url))
        try:
            await stop.wait()
        finally:
            upkeep.cancel()


async def _watch(args: argparse.Namespace) -> int:
    relay_settings = settings.from_env()
    user_id = args.user_id or await find_user_id(relay_settings.database_url, args.email)
    url = args.url or f"http://{relay_settings.host}:{relay_settings.port}"
    return await watch(
        relay_url=url,
        jwt_secret=relay_settings.jwt_secret,
        user_id=user_id,
        expires_in=args.expires_in,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m relay",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command")
    serve_parser = commands.add_parser("serve", help="run the relay (the default)")
    serve_parser.add_argument("--host")
    serve_parser.add_argument("--port", type=int)
    watch_parser = commands.add_parser("watch", help="print one user's live updates")
    who = watch_parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--email")
    who.add_argument("--user-id", type=uuid.UUID)
    watch_parser.add_argument("--url", help="the relay's base URL (default: the local relay)")
    watch_parser.add_argument("--expires-in", type=float, default=24 * 3600)
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "watch":
        # The watch prints messages; the client library's own chatter stays out of them.
        logs.configure(logging.WARNING)
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(_watch(args))
        return 0
    logs.configure()
    relay_settings = settings.from_env()
    if getattr(args, "host", None):
        relay_settings = replace(relay_settings, host=args.host)
    if getattr(args, "port", None) is not None:
        relay_settings = replace(relay_settings, port=args.port)
    asyncio.run(_serve_until_stopped(relay_settings))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
