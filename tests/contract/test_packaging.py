"""The wheel carries every module of the source tree, as pyproject.toml's package map says.

The map is read from pyproject.toml (`packages` and `package-dir`), never copied here: the
folders on disk must agree with it (every package folder is packaged, every packaged folder
exists), and the built wheel must hold every file of those folders under its import path.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from support import REPO

SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
PACKAGES: list[str] = SETUPTOOLS["packages"]
PACKAGE_DIRS: dict[str, str] = SETUPTOOLS["package-dir"]
PACKAGE_DATA: dict[str, list[str]] = SETUPTOOLS.get("package-data", {})
# Where packages may live: a folder with an __init__.py under these is one, or data of one.
SOURCE_ROOTS = ("services", "kernels", "protos/gen/python")
# Code, stubs and the data files the code reads (prompts, the cognition base, the noise floor, templates).
SHIPPED_SUFFIXES = {".py", ".pyi", ".md", ".toml", ".typed", ".json", ".html"}


def folder(package: str) -> Path:
    """The package's folder, as setuptools finds it: its nearest ancestor in package-dir, then the rest."""
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        root = ".".join(parts[:cut])
        if root in PACKAGE_DIRS:
            return REPO / PACKAGE_DIRS[root] / Path(*parts[cut:])
    raise AssertionError(f"{package}: no folder in [tool.setuptools.package-dir] holds it")


def package_data_files() -> set[Path]:
    return {
        path.resolve()
        for package, patterns in PACKAGE_DATA.items()
        for pattern in patterns
        for path in folder(package).glob(pattern)
    }


def test_every_packaged_folder_exists() -> None:
    missing = sorted(package for package in PACKAGES if not (folder(package) / "__init__.py").is_file())
    assert not missing, f"packaged in pyproject.toml but not on disk: {missing}"


def test_every_package_folder_is_packaged() -> None:
    packaged = {folder(package).resolve() for package in PACKAGES}
    data = package_data_files()
    unpackaged = sorted(
        str(init.parent.relative_to(REPO))
        for root in SOURCE_ROOTS
        for init in (REPO / root).rglob("__init__.py")
        if init.parent.resolve() not in packaged and init.resolve() not in data
    )
    assert not unpackaged, f"add these packages to [tool.setuptools] in pyproject.toml: {unpackaged}"


def test_wheel_contains_every_module(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-P", "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(REPO)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("asiarch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"{root.replace('.', '/')}/{path.relative_to(REPO / source).as_posix()}"
        for root, source in PACKAGE_DIRS.items()
        for path in (REPO / source).rglob("*")
        if path.suffix in SHIPPED_SUFFIXES and "__pycache__" not in path.parts
    }
    missing = sorted(expected - names)
    assert not missing, f"add these packages or data to [tool.setuptools] in pyproject.toml: {missing}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "asiarch = asiarch.common.cli:main" in text
    assert "selector = asiarch.selector.service:SERVICE" in text
    assert "engineer = asiarch.engineer.service:SERVICE" in text
    assert "analyst = asiarch.analyst.service:SERVICE" in text
    # The FLA-compatibility start-up hook sits at the top of site-packages.
    hook = zipfile.ZipFile(wheel).read("asiarch-fla-compat.pth").decode()
    assert hook == (REPO / "kernels" / "fla_compat" / "asiarch-fla-compat.pth").read_text()
