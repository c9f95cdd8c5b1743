"""The `evhub` command: run a hub, check a configuration, manage web users and API tokens.

Plugins add more (`simulate`, `plan`) through the `hub_cli_commands` hook.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import inspect
import logging
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from hub.bootstrap import ConfigInvalid, check_config, create_hub, load_plugins, setup_logging
from hub.plugins import PluginHost

_LOGGER = logging.getLogger("evhub")


def version() -> str:
    try:
        return importlib.metadata.version("evhub")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _config_dir(value: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is not a directory")
    return path


def build_parser(host: PluginHost | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evhub", description="EV charging management hub")
    parser.add_argument("--version", action="version", version=f"evhub {version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the hub")
    run.add_argument("-c", "--config", type=_config_dir, default=Path("config"))
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    check = sub.add_parser("check-config", help="validate a configuration directory")
    check.add_argument("-c", "--config", type=_config_dir, default=Path("config"))

    from web import cli as web_cli  # `evhub user` and `evhub token`

    web_cli.configure(sub, _config_dir)

    for plugin, (name, help_text, configure, run_fn), _ in (
        host.collect_calls("hub_cli_commands", loaded=True) if host else ()
    ):
        if name in sub.choices:
            _LOGGER.error("plugin %s: command %r already exists", plugin, name)
            continue
        command = sub.add_parser(name, help=help_text)
        configure(command)
        command.set_defaults(plugin_run=run_fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    host = load_plugins()
    args = build_parser(host).parse_args(argv)
    if getattr(args, "plugin_run", None) is not None:
        setup_logging(getattr(args, "log_level", None) or "info")
        result = args.plugin_run(args)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        return int(result or 0)
    if args.command == "check-config":
        return cmd_check_config(args.config, host)
    if args.command in ("user", "token"):
        from web import cli as web_cli

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        return web_cli.run(args)
    if args.command == "run":
        setup_logging(args.log_level or "info")
        try:
            return asyncio.run(cmd_run(args.config, args.log_level, host))
        except KeyboardInterrupt:
            return 130
    return 2


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def cmd_check_config(config_dir: Path, host: PluginHost) -> int:
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    _, _, errors = check_config(config_dir, host)
    for err in errors:
        print(err)
    return 1 if errors else 0


async def cmd_run(config_dir: Path, log_level: str | None, host: PluginHost) -> int:
    try:
        hub = create_hub(config_dir, host=host)
    except ConfigInvalid as err:
        for error in err.errors:
            print(error, file=sys.stderr)
        _LOGGER.error("configuration in %s is invalid; not starting", config_dir)
        return 1
    if log_level:  # the command line wins over configuration.yaml
        logging.getLogger().setLevel(log_level.upper())

    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()

    def request_stop(signum: int) -> None:
        if stop_requested.is_set():
            _LOGGER.warning("second %s: exiting without a clean shutdown", signal.strsignal(signum))
            raise SystemExit(1)
        _LOGGER.info("%s received, shutting down", signal.strsignal(signum))
        stop_requested.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, request_stop, signum)

    await hub.start()
    # Start-up objects live as long as the hub: keep them out of every future full collection,
    # which otherwise pauses the loop for hundreds of ms with thousands of connections.
    gc.collect()
    gc.freeze()
    await stop_requested.wait()
    await hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
