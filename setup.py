"""Install the FLA-compatibility start-up hook next to the package.

Everything else about the build lives in pyproject.toml. A `.pth` file must
sit at the top of site-packages, which pyproject metadata cannot express, so
the build steps that produce wheels (regular and editable) copy it there. The
hook is one cheap line: it does nothing unless ASIARCH_FLA_COMPAT is set (see
kernels/fla_compat/__init__.py).
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH_SOURCE = Path(__file__).parent / "kernels" / "fla_compat" / "asiarch-fla-compat.pth"
PTH_NAME = PTH_SOURCE.name


class BuildPyWithHook(build_py):
    def run(self) -> None:
        super().run()
        (Path(self.build_lib) / PTH_NAME).write_text(PTH_SOURCE.read_text())

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH_NAME)]


class EditableWheelWithHook(editable_wheel):
    # setuptools writes its own .pth files for an editable install in this
    # step; ours joins them (it sorts after __editable__*.pth, so the editable
    # finder is in place when the hook imports asiarch.kernels.fla_compat).
    def _install_namespaces(self, installation_dir: str, pth_prefix: str) -> None:
        super()._install_namespaces(installation_dir, pth_prefix)
        (Path(installation_dir) / PTH_NAME).write_text(PTH_SOURCE.read_text())


setup(cmdclass={"build_py": BuildPyWithHook, "editable_wheel": EditableWheelWithHook})
