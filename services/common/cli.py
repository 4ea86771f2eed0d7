"""The `asiarch` command.

Services and extra subcommands are found through entry points, so this module
never imports a service: `asiarch.services` maps a name to a
ServiceDefinition, `asiarch.commands` to a function that adds a subcommand.
Another package can therefore add or replace a service without touching ours.

It also holds what the commands share to parse their arguments: the valid
values of enumerated options, asked of their owner (the contract's enums, the
LLM settings) only when a value is checked or listed, so that building the
parser, which every command and every service start does, loads nothing of
theirs; and the help formatter that shows each option's default. Every command traces its calls when
the OTEL_* variables turn tracing on (asiarch.common.tracing), as `asiarch-<command>`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import re
import signal
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, overload

from asiarch.common import health_check, tracing
from asiarch.common.config import env_name, load_settings
from asiarch.common.contract import budget_presets, precisions, proposal_modes
from asiarch.common.errors import ConfigError
from asiarch.common.local import stop_with_parent
from asiarch.common.logs import configure_logging
from asiarch.common.server import ServiceDefinition, serve
from asiarch.common.threads import bound_threads

SERVICES_GROUP = "asiarch.services"
COMMANDS_GROUP = "asiarch.commands"
EXIT_CONFIG = 2
PROJECT = "asiarch"


class Choices(Sequence[str]):
    """The valid values of an option, read from their owner the first time argparse checks or lists them.

    Give the option a `metavar` too: without one argparse lists the choices while the parser is built.
    """

    def __init__(self, owner: Callable[[], Iterable[str]]) -> None:
        self._owner = owner

    @functools.cached_property
    def _values(self) -> tuple[str, ...]:
        return tuple(self._owner())

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._values[index]

    def __len__(self) -> int:
        return len(self._values)

    def __str__(self) -> str:  # as a help string or an error message lists them
        return ", ".join(self._values)


def precision_value(precision: str | None) -> int:
    """Budget.precision for a --precision name; None is PRECISION_UNSPECIFIED (0): the preset's default."""
    return precisions()[precision] if precision else 0


def proposal_mode_value(mode: str | None) -> int:
    """ProposeRequest.mode for a mode name; None is PROPOSAL_MODE_UNSPECIFIED (0): the researcher chooses."""
    return proposal_modes()[mode] if mode else 0


def _llm_backends() -> tuple[str, ...]:
    from asiarch.common.llm.factory import Backend

    return tuple(backend.value for backend in Backend)


BUDGETS = Choices(budget_presets)
PRECISIONS = Choices(precisions)
MODES = Choices(proposal_modes)
LLM_BACKENDS = Choices(_llm_backends)


def llm_backend(given: str | None) -> str:
    """The LLM backend of the local services a command starts: --llm, else $ASIARCH_LLM_BACKEND, else none.

    Only the backend is read here: the services started read all of ASIARCH_LLM_* with their own
    settings. Raises ConfigError when the variable names no backend, before anything starts.
    """
    from asiarch.common.llm.factory import Backend, LLMSettings

    variable = env_name(LLMSettings, "llm_backend")
    backend = given or os.environ.get(variable) or Backend.NONE.value
    if backend not in LLM_BACKENDS:
        raise ConfigError(f"{variable}={backend!r} is not an LLM backend; valid: {', '.join(LLM_BACKENDS)}")
    return backend


def proposal_mode(mode: str | None, llm: str | None) -> str | None:
    """The mode to ask a researcher for, given --mode and the researcher's LLM backend.

    No --mode: code with an LLM, dsl without. `llm` None means the researcher is not ours and its LLM
    is unknown: the answer is then --mode as given, and None lets the researcher choose
    (PROPOSAL_MODE_UNSPECIFIED, the same rule on its side). --mode code without an LLM is refused
    rather than run: the researcher could only answer with DSL mutations, hours of a run that is not
    the one asked for.
    """
    from asiarch.common.llm.factory import Backend

    if llm is None:
        return mode
    if mode is None:
        return "dsl" if llm == Backend.NONE else "code"
    if mode == "code" and llm == Backend.NONE:
        with_llm = "|".join(backend for backend in LLM_BACKENDS if backend != Backend.NONE)
        raise ConfigError(
            "--mode code needs an LLM to write the code, and the researcher started here has none: "
            f"give --llm {with_llm} (or set ASIARCH_LLM_BACKEND), "
            "or leave --mode out (without an LLM the researcher proposes DSL mutations)"
        )
    return mode


def matching(pattern: re.Pattern[str], valid: str) -> Callable[[str], str]:
    """An argparse type that accepts what the owner's pattern matches and otherwise lists what is valid."""

    def parse(text: str) -> str:
        if pattern.fullmatch(text) is None:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}; valid: {valid}")
        return text

    return parse


def in_repository() -> bool:
    """Whether the current directory is this project's root (its pyproject.toml names the project)."""
    try:
        with open("pyproject.toml", "rb") as file:
            return bool(tomllib.load(file).get("project", {}).get("name") == PROJECT)
    except (OSError, tomllib.TOMLDecodeError):
        return False


def output_path(given: Path | None, docs_name: str) -> Path:
    """Where a command that writes a document writes it: --out when given; docs/NAME from the project's
    root, where it is the project's own page; anywhere else a new temporary folder, so that running the
    command elsewhere never writes into that directory's docs/."""
    if given is not None:
        return given
    if in_repository():
        return Path("docs") / docs_name
    return Path(tempfile.mkdtemp(prefix=f"{PROJECT}-{Path(docs_name).stem}-")) / docs_name


class HelpFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to every option that takes a value, unless its help already says the default.

    Options whose default is None say in words what happens instead; flags are off unless given.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            not action.option_strings
            or action.nargs == 0
            or action.default in (None, argparse.SUPPRESS)
            or "default" in text
        ):
            return action.help
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """The parser of `asiarch` and of each command (add_subparsers passes the class on)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


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
    # Before the service's modules load: numpy's BLAS and torch size their pools when imported.
    threads = bound_threads()
    definition = load_service(args.service)
    overrides = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    settings = load_settings(definition.settings_type, **overrides)
    for extra in definition.all_settings()[1:]:
        load_settings(extra)
    configure_logging(settings.log_level, settings.log_format, service=definition.name)
    threads.log()
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
    parser = Parser(prog=PROJECT, description="Autonomous discovery of linear-attention architectures.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_cmd = commands.add_parser(
        "serve",
        help="run one service as a gRPC server",
        description="Run one service. Configuration comes from ASIARCH_* environment variables; "
        "--host/--port override ASIARCH_HOST/ASIARCH_PORT.",
    )
    serve_cmd.add_argument("service", help="service name (see `asiarch services`)")
    serve_cmd.add_argument("--host", help="interface to listen on (default: $ASIARCH_HOST, else 127.0.0.1)")
    serve_cmd.add_argument(
        "--port",
        type=int,
        help="port; 0 picks a free port and logs it (default: $ASIARCH_PORT, else the service's own)",
    )
    serve_cmd.add_argument(
        "--port-file", type=Path, help="write the bound port to this file once serving (default: none)"
    )
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
        if args.command == "serve":  # a service drains on SIGTERM itself (asiarch.common.server)
            stop_with_parent()
        else:
            # SIGTERM (kill, docker stop, a CI timeout) stops a command as Ctrl-C does: its task is
            # cancelled, so the local services it started are stopped and its run says "stopped". Python's
            # default would end the process at once and leave those services running.
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            tracing.configure(args.command)  # a service names its own traces when it starts serving
        return int(args.run(args) or 0)
    except ConfigError as exc:
        print(f"asiarch: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    finally:
        tracing.shutdown()  # the spans still buffered are exported before the process ends


if __name__ == "__main__":
    sys.exit(main())
