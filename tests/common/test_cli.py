"""The `asiarch` command stays cheap: building it never imports torch, nor the owners of the options'
valid values; and its help says what every option defaults to.

Every `asiarch serve <service>` builds the full parser, including commands
that other packages register, and the selector's image has no torch (nor
huggingface_hub, which the LLM backends import).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import BIN

from asiarch.common.cli import build_parser
from asiarch.selector.strategies import list_strategies

# Loaded only when an option's value is checked or listed (asiarch.common.llm: the --llm choices).
NOT_AT_BUILD = (
    "torch",
    "triton",
    "numpy",
    "huggingface_hub",
    "asiarch.common.llm",
    "asiarch.selector.strategies",
)
COMMANDS = ("discover", "evaluate", "validate", "baselines", "propose")


def test_parser_builds_without_importing_torch() -> None:
    code = (
        "import sys; from asiarch.common.cli import build_parser; build_parser(); "
        f"print(sorted(m for m in {NOT_AT_BUILD!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def _command(name: str) -> argparse.ArgumentParser:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]


def _help_by_option(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's entry in --help (its line and the wrapped lines under it), by its first flag."""
    entries: dict[str, str] = {}
    current = ""
    for line in parser.format_help().splitlines():
        head = re.match(r"  (-[\w-]+)", line)
        if head:
            current = head.group(1)
            entries[current] = line
        elif line.startswith("   ") and current:
            entries[current] += " " + line.strip()
        else:
            current = ""
    return {flag: " ".join(text.split()) for flag, text in entries.items()}


@pytest.mark.parametrize("name", COMMANDS)
def test_help_says_every_option_s_default(name: str) -> None:
    parser = _command(name)
    entries = _help_by_option(parser)
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0 or action.required:
            continue  # positionals, flags (off unless given), required options
        entry = entries[action.option_strings[0]]
        assert "default" in entry, f"asiarch {name} --help: {entry}"


def test_help_lists_defaults_and_choices_of_discover() -> None:
    done = subprocess.run(
        [str(BIN / "asiarch"), "discover", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    strategies = ", ".join(info.name for info in list_strategies())
    assert f"{strategies} (default: asi-arch)" in text
    assert "smoke, cpu, gpu, small (default: cpu)" in text
    assert "(default: 3)" in text and "none, local, tgi, openai" in text


def test_help_lists_the_commands() -> None:
    done = subprocess.run([str(BIN / "asiarch"), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for command in ("serve", "services", "bench"):
        assert command in done.stdout


def test_services_lists_the_selector() -> None:
    done = subprocess.run([str(BIN / "asiarch"), "services"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "selector\tasiarch.selector.service:SERVICE" in done.stdout


def test_health_reports_serving_and_fails_for_an_unreachable_address(service_factory) -> None:
    selector = service_factory("selector")
    asiarch = str(BIN / "asiarch")
    done = subprocess.run([asiarch, "health", selector.address], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{selector.address}\tSERVING"

    done = subprocess.run(
        [asiarch, "health", "--service", "asiarch.v1.Selector", selector.address, "127.0.0.1:1", "--wait=1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"{selector.address}\tSERVING" in done.stdout
    assert "127.0.0.1:1\tUNAVAILABLE" in done.stderr


@pytest.mark.parametrize(
    ("args", "listed"),
    [
        (["evaluate", "layer.py", "--budget", "nope"], "'smoke', 'cpu', 'gpu'"),
        (["evaluate", "layer.py", "--device", "tpu"], "'cpu', 'cuda' or 'cuda:N'"),
        (["baselines", "--budget", "nope"], "'smoke', 'cpu', 'gpu'"),
        (["propose", "--parent", "layer.py", "--mode", "nope"], "'code', 'dsl'"),
        (["propose", "--parent", "layer.py", "--llm", "nope"], "'none', 'local', 'tgi', 'openai'"),
    ],
)
def test_commands_refuse_an_unknown_value_before_starting_anything(args: list[str], listed: str) -> None:
    done = subprocess.run([str(BIN / "asiarch"), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert listed in done.stderr


def test_propose_refuses_code_without_an_llm(tmp_path: Path) -> None:
    parent = tmp_path / "layer.py"
    parent.write_text("class DeltaNet: ...\n")
    done = subprocess.run(
        [str(BIN / "asiarch"), "propose", "--parent", str(parent), "--mode", "code", "--llm", "none"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "--mode code needs an LLM" in done.stderr
