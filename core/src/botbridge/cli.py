"""The `botbridge` command: the host, its plugins, its store, API keys and secrets."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys

from pydantic import ValidationError

from botbridge import logs, security_cli, tail
from botbridge.plugins import Plugins
from botbridge.settings import Settings, SettingsInvalid, settings_errors


def versions() -> list[str]:
    """Core's version, then each installed plugin distribution's (read from metadata, nothing imported)."""
    import importlib.metadata

    from botbridge import __version__
    from botbridge.plugins import CORE_DISTRIBUTION, ENTRY_POINT_GROUP

    plugins = {
        (ep.dist.name, ep.dist.version)
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        if ep.dist is not None and ep.dist.name != CORE_DISTRIBUTION
    }
    return [f"{CORE_DISTRIBUTION} {__version__}", *(f"{name} {version}" for name, version in sorted(plugins))]


class _Version(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print("\n".join(versions()))
        parser.exit()


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from botbridge.host import create_app

    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    app = create_app(settings)
    # What is alive now (modules, plugins, models' schemas, the app) lives as
    # long as the process: out of the cyclic collector's sight, a full
    # collection no longer walks ~100k objects (tens of ms, a pause every
    # message in flight waits out) to find nothing.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level.lower(),
        log_config=None,
        access_log=args.access_log,
    )
    return 0


def _plugins(args: argparse.Namespace) -> int:
    plugins = Plugins.discover(Settings())
    described = plugins.describe()
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    for info in described:
        provides = ", ".join(
            [f"channel {n}" for n in info["channels"]]
            + [f"connector type {n}" for n in info["connector_types"]]
            + [f"store {n}://" for n in info["store_schemes"]]
        )
        version = f" {info['version']}" if info["version"] else ""
        print(f"{info['name']:<20} {info['distribution'] or '-'}{version}  {provides or '-'}")
        for error in info["errors"]:
            print(f"{'':<20} ERROR: {error}")
    return 1 if any(info["errors"] for info in described) else 0


def _demo(args: argparse.Namespace) -> int:
    from botbridge.demo import main as demo

    return demo(args.channel, args.bot, args.interactive)


def _new_plugin(args: argparse.Namespace) -> int:
    from pathlib import Path

    from botbridge.scaffold import create_plugin, quick_start

    try:
        root = create_plugin(args.name, args.kind, Path(args.dest))
    except (ValueError, FileExistsError) as exc:
        print(f"botbridge new-plugin: {exc}", file=sys.stderr)
        return 2
    print(f"created {root}; to install it with its test tools and run its tests:\n  {quick_start(root)}")
    return 0


def _store_migrate(args: argparse.Namespace) -> int:
    import asyncio

    from botbridge.clock import SystemClock
    from botbridge.errors import StoreUnavailable
    from botbridge.runtime import open_store

    settings = Settings()
    store = open_store(settings, Plugins.discover(settings), SystemClock())
    try:
        applied = asyncio.run(store.migrate())
    except StoreUnavailable as exc:
        print(f"botbridge store migrate: {exc}", file=sys.stderr)
        return 1
    if applied:
        print("applied migrations " + ", ".join(map(str, applied)))
    else:
        print("the store's schema is up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Every command; the top-level help lists each one added here with its help."""
    parser = argparse.ArgumentParser(prog="botbridge", description=__doc__)
    parser.add_argument("--version", action=_Version, help="print the versions of core and of every installed plugin")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the host under uvicorn")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    serve.add_argument("--access-log", action="store_true", help="log every request (default: off)")
    serve.set_defaults(func=_serve)
    listing = commands.add_parser("plugins", help="list installed plugins and load errors")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table (default: a table)")
    listing.set_defaults(func=_plugins)
    demo = commands.add_parser("demo", help="the product end to end against the providers' fakes")
    demo.add_argument("--channel", help="channel fake to use: sinch, bird, scg (default: scg)")
    demo.add_argument(
        "--bot", help="bot fake to use: directline, lex, dialogflow or a connector type (default: directline)"
    )
    demo.add_argument("--interactive", action="store_true", help="type as the phone user (default: a scripted phone)")
    demo.set_defaults(func=_demo)
    scaffold = commands.add_parser("new-plugin", help="write a complete, tested plugin skeleton")
    scaffold.add_argument("name", help="the plugin name, e.g. whatsapp_cloud")
    scaffold.add_argument("--kind", choices=("channel", "bot", "store"), required=True, help="what the plugin provides")
    scaffold.add_argument("--dest", default=".", help="folder to create it in (default: the current folder)")
    scaffold.set_defaults(func=_new_plugin)
    store = commands.add_parser("store", help="store maintenance").add_subparsers(dest="action", required=True)
    store.add_parser("migrate", help="apply the store's pending schema migrations").set_defaults(func=_store_migrate)
    security_cli.register(commands)
    tail.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except ValidationError as exc:
        if exc.title != Settings.__name__:
            raise
        print("\n".join(settings_errors(exc)), file=sys.stderr)
        return 2
    except SettingsInvalid as exc:
        print(exc.line, file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader left (`botbridge plugins --json | head`): stop quietly, as
        # Python's documentation advises, without a second error at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
