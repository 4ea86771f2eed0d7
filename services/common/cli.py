"""The `asiarch` command.

Services and extra subcommands are found through entry points, so this module
never imports a service: `asiarch.services` maps a name to a
ServiceDefinition, `asiarch.commands` to a function that adds a subcommand.
Another package can therefore add or replace a service without touching ours.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from asiarch.common import health_check
from asiarch.common.config import load_settings
from asiarch.common.errors import ConfigError
from asiarch.common.logs import configure_logging
from asiarch.common.server import ServiceDefinition, serve

SERVICES_GROUP = "asiarch.services"
COMMANDS_GROUP = "asiarch.commands"
EXIT_CONFIG = 2


def _service_entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=SERVICES_GROUP)}


def load_service(name: str) -> ServiceDefinition:
    available = _service_entry_points()
    if name not in available:
        raise ConfigError(f"unknown service {name!r}; installed services: {', '.join(sorted(available))}")
    try:
        definition = available[name].load()
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "asiarch":
            raise  # our own code is broken: show the real traceback
        raise ConfigError(
            f"service {name!r} needs {exc.name!r}, which is not installed; "
            f"install the service with: pip install 'asiarch[{name}]'"
        ) from None
    if not isinstance(definition, ServiceDefinition):
        raise ConfigError(f"entry point {available[name].value!r} is not a ServiceDefinition")
    return definition


def _run_serve(args: argparse.Namespace) -> int:
    definition = load_service(args.service)
    overrides = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    settings = load_settings(definition.settings_type, **overrides)
    for extra in definition.extra_settings:
        load_settings(extra)
    configure_logging(settings.log_level, settings.log_format, service=definition.name)
    asyncio.run(serve(definition, settings, port_file=args.port_file))
    return 0


def _run_services(_: argparse.Namespace) -> int:
    for name, entry in sorted(_service_entry_points().items()):
        print(f"{name}\t{entry.value}")
    return 0


def command_group(commands: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """The targets of `asiarch NAME TARGET` (e.g. `bench kernels`, `bench analyst`).

    Several plugins add targets to one command; whichever registers first creates it.
    """
    parser = commands.choices.get(name) or commands.add_parser(name, help=help)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="target", required=True, metavar="TARGET")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asiarch", description="Autonomous discovery of linear-attention architectures."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_cmd = commands.add_parser(
        "serve",
        help="run one service as a gRPC server",
        description="Run one service. Configuration comes from ASIARCH_* environment variables; "
        "--host/--port override ASIARCH_HOST/ASIARCH_PORT.",
    )
    serve_cmd.add_argument("service", help="service name (see `asiarch services`)")
    serve_cmd.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port; 0 picks a free port and logs it")
    serve_cmd.add_argument("--port-file", type=Path, help="write the bound port to this file once serving")
    serve_cmd.set_defaults(run=_run_serve)

    services_cmd = commands.add_parser("services", help="list the installed services")
    services_cmd.set_defaults(run=_run_services)
    health_check.register(commands)

    for entry in entry_points(group=COMMANDS_GROUP):
        register: Callable[[argparse._SubParsersAction], None] = entry.load()
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except ConfigError as exc:
        print(f"asiarch: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
