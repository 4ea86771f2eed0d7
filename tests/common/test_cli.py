"""The `asiarch` command stays cheap: building it never imports torch.

Every `asiarch serve <service>` builds the full parser, including commands
that other packages register, and the selector's image has no torch.
"""

from __future__ import annotations

import subprocess
import sys

from support import BIN


def test_parser_builds_without_importing_torch() -> None:
    code = (
        "import sys; from asiarch.common.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'triton', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


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
