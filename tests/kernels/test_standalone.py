"""A standalone copy of the kernels (asiarch.kernels.standalone): what `asiarch results export` builds on.

The exported files themselves are tested in tests/orchestrator/test_results.py; these tests pin
the kernels' side: a copy holds only the files it needs, imports nothing of asiarch, offers every
name it claims, and runs the PyTorch core on every device.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
from pathlib import Path

import pytest

from asiarch.kernels import standalone
from asiarch.kernels.common import dispatch

EVERYTHING = {standalone.BACKBONE, *(subpackage for _, subpackage in standalone.OFFERS.values())}

# Loads a copy of everything where asiarch cannot be imported, then prints each offered name's module.
CHECK = """
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("asiarch", "fla"):
            raise ImportError(f"{name} is not installed here")

sys.meta_path.insert(0, Blocked())
files, offers = eval(sys.stdin.read())
exec("from __future__ import annotations\\n" + sys.argv[1])  # as in an exported file
load_copy("_copy", files)
import importlib
for name, (_, subpackage) in sorted(offers.items()):
    print(name, getattr(importlib.import_module(f"_copy.{subpackage}"), name).__module__)
print(importlib.import_module("_copy.models").LanguageModel.__module__)
"""


def test_a_copy_of_everything_runs_without_asiarch() -> None:
    import inspect

    files = standalone.files(EVERYTHING)
    source = inspect.getsource(standalone.load_copy)
    result = subprocess.run(
        [sys.executable, "-P", "-c", CHECK, source],
        input=repr((files, standalone.OFFERS)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(standalone.OFFERS) + 1
    assert all(line.split()[-1].startswith("_copy.") for line in lines), lines
    assert lines[-1] == "_copy.models.backbone"


def test_a_copy_holds_what_its_subpackages_import_and_nothing_else() -> None:
    files = standalone.files({"delta_rule"})
    assert {"__init__.py", "delta_rule/chunk.py", "common/dispatch.py", "common/chunk_torch.py"} <= set(files)
    # dispatch normalises q and k with the modules' l2norm
    assert "modules/l2norm.py" in files
    assert not [path for path in files if path.startswith(("gated_delta_rule/", "models/", "utils/"))]
    # the Triton modules are imported lazily, inside a function: a copy leaves them out
    assert not [path for path in files if "triton" in path]
    assert files["delta_rule/chunk.py"] == (standalone.ROOT / "delta_rule" / "chunk.py").read_text()


def test_a_copy_runs_the_pytorch_core_on_every_device() -> None:
    cuda_tensor = types.SimpleNamespace(is_cuda=True)
    assert dispatch.backend(cuda_tensor) == "triton"  # asiarch has the Triton cores
    standalone.load_copy("_test_copy_backend", standalone.files({"delta_rule"}))
    try:
        copied = importlib.import_module("_test_copy_backend.common.dispatch")
        assert copied.backend(cuda_tensor) == "torch"
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "_test_copy_backend"]:
            del sys.modules[name]


def test_a_file_importing_asiarch_cannot_be_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "family").mkdir()
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "family" / "__init__.py").write_text("from .chunk import op\n")
    (tmp_path / "family" / "chunk.py").write_text("from asiarch.kernels.common.dispatch import run\n")
    monkeypatch.setattr(standalone, "ROOT", tmp_path)
    with pytest.raises(ValueError, match=r"family/chunk\.py: a standalone copy cannot import asiarch"):
        standalone.files({"family"})
