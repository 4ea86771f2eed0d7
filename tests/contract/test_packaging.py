"""The wheel carries every module of the source tree (the package list in pyproject is explicit)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from support import REPO

# Source folder -> import path inside the wheel.
MAPPED = {
    REPO / "services" / "common": "asiarch/common",
    REPO / "services" / "selector": "asiarch/selector",
    REPO / "services" / "engineer": "asiarch/engineer",
    REPO / "services" / "researcher": "asiarch/researcher",
    REPO / "services" / "analyst": "asiarch/analyst",
    REPO / "protos" / "gen" / "python" / "asiarch" / "v1": "asiarch/v1",
    REPO / "kernels": "asiarch/kernels",
}


def test_wheel_contains_every_module(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-P", "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(REPO)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("asiarch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"{target}/{path.relative_to(source).as_posix()}"
        for source, target in MAPPED.items()
        for path in source.rglob("*")
        # Code, stubs and the data files the code reads (prompts, the cognition base).
        if path.suffix in {".py", ".pyi", ".md", ".toml", ".typed"} and "__pycache__" not in path.parts
    }
    missing = sorted(expected - names)
    assert not missing, f"add these packages to [tool.setuptools] in pyproject.toml: {missing}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "asiarch = asiarch.common.cli:main" in text
    assert "selector = asiarch.selector.service:SERVICE" in text
    assert "engineer = asiarch.engineer.service:SERVICE" in text
    assert "analyst = asiarch.analyst.service:SERVICE" in text
    # The FLA-compatibility start-up hook sits at the top of site-packages.
    hook = zipfile.ZipFile(wheel).read("asiarch-fla-compat.pth").decode()
    assert hook == (REPO / "kernels" / "fla_compat" / "asiarch-fla-compat.pth").read_text()
