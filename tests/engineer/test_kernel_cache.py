"""The shared Triton kernel cache: warm once, compile nothing again, and no candidate can poison it.

On CPU nothing compiles, so a fake JIT stands in for Triton's: like `triton.compiler.compile`, it
looks a kernel's key up through the cache manager Triton selects (`get_cache_manager`, which reads
TRITON_CACHE_MANAGER and TRITON_CACHE_DIR) and, on a miss, "compiles": puts the kernel's files and
their group. Evaluations get the environment a sandbox child gets (sandbox.child_env), the warm step
the one kernel_warm gives its process. Isolation is tested in real sandbox children.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from layers import BASELINES, SANDBOX_BUDGET
from test_sandbox_attacks import ROOT, attack

from asiarch.common.errors import ConfigError
from asiarch.engineer import kernel_cache, kernel_warm, sandbox
from asiarch.engineer.budgets import resolve

triton_cache = pytest.importorskip("triton.runtime.cache")
TRITON_VARIABLES = ("TRITON_CACHE_DIR", "TRITON_CACHE_MANAGER", kernel_cache.SHARED_ENV)
KERNELS = ("chunk_fwd", "chunk_bwd")


def key_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class FakeJIT:
    """Compiles a kernel only when the cache Triton selects has no complete entry for its key."""

    def __init__(self) -> None:
        self.compiled: list[str] = []

    def __call__(self, name: str) -> dict[str, str]:
        manager = triton_cache.get_cache_manager(key_of(name))
        group = manager.get_group("kernel.json")
        if group and "kernel.json" in group:
            return group
        self.compiled.append(name)
        files = {
            "kernel.cubin": manager.put(f"binary of {name}".encode(), "kernel.cubin"),
            "kernel.json": manager.put(json.dumps({"name": name}), "kernel.json", binary=False),
        }
        manager.put_group("kernel.json", files)
        return files


def use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Give this process the Triton cache variables of `env` (and none it lacks)."""
    for name in TRITON_VARIABLES:
        if name in env:
            monkeypatch.setenv(name, env[name])
        else:
            monkeypatch.delenv(name, raising=False)


def warm(monkeypatch: pytest.MonkeyPatch, shared: str, names: tuple[str, ...] = KERNELS) -> list[str]:
    """The engineer's warm step, with the fake JIT for Triton: what it compiled."""
    jit = FakeJIT()
    with tempfile.TemporaryDirectory() as home:
        use(monkeypatch, kernel_warm.warm_env(home, 2, shared))
        for name in names:
            jit(name)
    return jit.compiled


def evaluate(
    monkeypatch: pytest.MonkeyPatch, workdir: Path, shared: str | None, names: tuple[str, ...] = KERNELS
) -> list[str]:
    """One evaluation's kernels, looked up as its sandbox child would: what it compiled."""
    workdir.mkdir()
    use(monkeypatch, sandbox.child_env(str(workdir), 2, shared))
    jit = FakeJIT()
    for name in names:
        jit(name)
    return jit.compiled


def snapshot(folder: str) -> dict[str, tuple[int, bytes]]:
    """Every file and folder under `folder`: mode and contents."""
    found = {}
    for path in sorted(Path(folder).rglob("*")):
        found[str(path.relative_to(folder))] = (
            path.stat().st_mode,
            path.read_bytes() if path.is_file() else b"",
        )
    return found


@pytest.fixture
def shared(tmp_path: Path) -> str:
    folder = kernel_cache.prepare_shared_dir(str(tmp_path / "shared"))
    assert folder is not None
    return folder


def test_without_a_shared_cache_every_evaluation_compiles_every_kernel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert evaluate(monkeypatch, tmp_path / "first", None) == list(KERNELS)
    assert evaluate(monkeypatch, tmp_path / "second", None) == list(KERNELS)


def test_once_warm_no_evaluation_compiles_a_warmed_kernel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared: str
) -> None:
    assert warm(monkeypatch, shared) == list(KERNELS)
    assert evaluate(monkeypatch, tmp_path / "first", shared) == []
    assert evaluate(monkeypatch, tmp_path / "second", shared) == []
    assert not list((tmp_path / "second").rglob("kernel.*")), "a warmed kernel was written to the overlay"


def test_a_candidates_new_kernel_goes_to_its_overlay_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared: str
) -> None:
    warm(monkeypatch, shared)
    before = snapshot(shared)
    assert evaluate(monkeypatch, tmp_path / "first", shared, ("its_own",)) == ["its_own"]
    assert list((tmp_path / "first").rglob("kernel.cubin")), "the new kernel is not in the overlay"
    assert snapshot(shared) == before
    # Never promoted: the next evaluation compiles it again (in its own overlay).
    assert evaluate(monkeypatch, tmp_path / "second", shared, ("its_own",)) == ["its_own"]


def test_an_incomplete_or_escaping_shared_entry_is_a_miss(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared: str
) -> None:
    warm(monkeypatch, shared)
    folder = Path(shared) / triton_cache._base32(key_of("chunk_fwd"))
    (folder / "kernel.cubin").unlink()
    outside = tmp_path / "outside.cubin"
    outside.write_text("not the engineer's")
    group = {"child_paths": {"kernel.json": str(folder / "kernel.json"), "../../outside.cubin": str(outside)}}
    (Path(shared) / triton_cache._base32(key_of("chunk_bwd")) / "__grp__kernel.json").write_text(
        json.dumps(group)
    )
    assert evaluate(monkeypatch, tmp_path / "evaluation", shared) == list(KERNELS)


# Candidate code (the body of a layer's constructor) that tries every way of writing into the shared
# cache, then reads a warmed kernel and compiles a new one through the cache manager Triton selects.
WRITE_ATTEMPTS = """
import os
from triton.runtime.cache import get_cache_manager
shared = os.environ["ASIARCH_KERNEL_CACHE_SHARED"]
manager = get_cache_manager(KEY)
entry = os.path.join(manager.shared_dir, "kernel.cubin")
def attempt(name, action):
    try:
        action()
        report[name] = "WROTE"
    except OSError as exc:
        report[name] = exc.strerror
open("staged", "w").write("poison")
attempt("new file", lambda: open(os.path.join(shared, "planted"), "w").write("poison"))
attempt("overwrite", lambda: open(entry, "w").write("poison"))
attempt("append", lambda: open(entry, "a").write("poison"))
attempt("replace", lambda: os.replace("staged", entry))
attempt("unlink", lambda: os.unlink(entry))
attempt("mkdir", lambda: os.mkdir(os.path.join(shared, "planted-key")))
attempt("chmod", lambda: os.chmod(shared, 0o777))
attempt("touch", lambda: os.utime(entry))
group = manager.get_group("kernel.json")
report["read from"] = os.path.dirname(group["kernel.cubin"])
report["read"] = open(group["kernel.cubin"]).read()
report["put to"] = os.path.dirname(manager.put(b"candidate", "kernel.cubin"))
report["overlay"] = os.environ["TRITON_CACHE_DIR"]
"""


def write_attempts(shared: str) -> dict[str, Any]:
    """Run WRITE_ATTEMPTS in a real sandbox child given `shared` as its kernel cache; its report."""
    code = WRITE_ATTEMPTS.replace("KEY", repr(key_of("chunk_fwd")))
    result, report = attack(code, kernel_cache_dir=shared)
    return {**report, "filesystem": result.enforcement["filesystem"]}


def assert_nothing_written(report: dict[str, Any], shared: str, before: dict[str, tuple[int, bytes]]) -> None:
    assert not [what for what, outcome in report.items() if outcome == "WROTE"], report
    assert snapshot(shared) == before
    key_folder = os.path.join(shared, triton_cache._base32(key_of("chunk_fwd")))
    assert report["read from"] == key_folder and report["read"] == "binary of chunk_fwd", report
    assert report["put to"].startswith(report["overlay"]), report


def test_a_sandboxed_candidate_cannot_write_the_shared_cache(
    monkeypatch: pytest.MonkeyPatch, shared: str
) -> None:
    warm(monkeypatch, shared)
    os.chmod(shared, 0o777)  # writable by anyone, as root: only the sandbox's read-only view may stop it
    before = snapshot(shared)
    assert_nothing_written(write_attempts(shared), shared, before)


# An engineer run as `nobody`. Here the interpreter lives where only root can read: as the sandbox's
# launcher does for itself, a private mount namespace shows `nobody` just the paths Python needs.
NOBODY_ENGINEER = """
import json, sys
sys.path.insert(0, TESTS)
import test_kernel_cache
from asiarch.engineer import isolation, sandbox_child
isolation.reveal_python_tree(sandbox_child._needed_paths({"readable_paths": [TESTS, SHARED]}))
isolation.drop_to_unprivileged()
print("REPORT " + json.dumps(test_kernel_cache.write_attempts(SHARED)))
"""


@pytest.mark.skipif(not ROOT, reason="becoming another user needs root")
def test_an_unprivileged_engineers_candidate_cannot_write_its_shared_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The engineer and its candidates share a uid: the read-only mount alone keeps the cache intact.
    shared = tempfile.mkdtemp(prefix="asiarch-test-kernel-cache-")
    try:
        warm(monkeypatch, shared)
        for path in [Path(shared), *Path(shared).rglob("*")]:
            os.chown(path, sandbox.NOBODY, sandbox.NOBODY)
        before = snapshot(shared)
        script = NOBODY_ENGINEER.replace("TESTS", repr(str(Path(__file__).parent)))
        done = subprocess.run(
            [sys.executable, "-P", "-c", script.replace("SHARED", repr(shared))],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.split("REPORT ", 1)[1])
        assert_nothing_written(report, shared, before)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


# Candidate code that plants a corrupted kernel, a group naming a host file and a foreign file in its
# own overlay, under a warmed key, then looks that key up as Triton would.
POISON_OVERLAY = """
import json, os
from triton.runtime.cache import get_cache_manager
manager = get_cache_manager(KEY)
own = manager.cache_dir
open(os.path.join(own, "kernel.cubin"), "w").write("corrupted")
host_file = {"child_paths": {"kernel.json": "/etc/passwd"}}
open(os.path.join(own, "__grp__kernel.json"), "w").write(json.dumps(host_file))
manager.put(b"foreign", "foreign.so")
group = get_cache_manager(KEY).get_group("kernel.json")
report["overlay"] = own
report["group"] = group
report["read"] = open(group["kernel.cubin"]).read()
"""


def test_a_poisoned_overlay_shadows_nothing_and_never_reaches_the_shared_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared: str
) -> None:
    warm(monkeypatch, shared)
    before = snapshot(shared)
    _, report = attack(POISON_OVERLAY.replace("KEY", repr(key_of("chunk_fwd"))), kernel_cache_dir=shared)
    assert report["read"] == "binary of chunk_fwd", report  # the shared entry, not the planted one
    assert all(path.startswith(shared) for path in report["group"].values()), report
    assert not os.path.exists(report["overlay"]), "the overlay outlived its evaluation"
    assert snapshot(shared) == before
    assert evaluate(monkeypatch, tmp_path / "next", shared) == []


# A C extension, built the way Triton builds its launchers and driver utilities (compile_module_from_src:
# gcc, through the cache manager): Triton's own caching code, run for real without a GPU.
EXTENSION = """
#include <Python.h>
static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(ANSWER); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "NAME", NULL, -1, methods};
PyMODINIT_FUNC PyInit_NAME(void) { return PyModule_Create(&module); }
"""


def extension(name: str, answer: int) -> str:
    return EXTENSION.replace("NAME", name).replace("ANSWER", str(answer))


# Candidate code that builds the warmed extension and a new one, counting the compiles Triton runs.
BUILD_EXTENSIONS = """
import triton.runtime.build as build
compiled = []
real_build = build._build
def counting(name, *args):
    compiled.append(name)
    return real_build(name, *args)
build._build = counting
for name, source in SOURCES:
    module = build.compile_module_from_src(source, name)
    report[name] = [module.answer(), module.__file__]
report["compiled"] = compiled
report["overlay"] = __import__("os").environ["TRITON_CACHE_DIR"]
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="Triton builds its modules with gcc")
def test_triton_builds_nothing_in_a_sandbox_once_warm(monkeypatch: pytest.MonkeyPatch, shared: str) -> None:
    from triton.runtime.build import compile_module_from_src

    warmed, new = (
        ("asiarch_warmed", extension("asiarch_warmed", 42)),
        ("asiarch_new", extension("asiarch_new", 7)),
    )
    with tempfile.TemporaryDirectory() as home:
        use(monkeypatch, kernel_warm.warm_env(home, 2, shared))
        assert compile_module_from_src(warmed[1], warmed[0]).answer() == 42
    before = snapshot(shared)
    _, report = attack(BUILD_EXTENSIONS.replace("SOURCES", repr([warmed, new])), kernel_cache_dir=shared)
    assert report["compiled"] == ["asiarch_new"], report
    assert report["asiarch_warmed"][0] == 42 and report["asiarch_warmed"][1].startswith(shared), report
    assert report["asiarch_new"][0] == 7 and report["asiarch_new"][1].startswith(report["overlay"]), report
    assert snapshot(shared) == before


def test_a_shared_cache_others_could_write_is_refused(tmp_path: Path) -> None:
    assert kernel_cache.prepare_shared_dir("") is None
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    open_folder.chmod(0o777)
    with pytest.raises(
        ConfigError, match=r"ASIARCH_ENGINEER_KERNEL_CACHE_DIR: .* is writable by its group or others"
    ):
        kernel_cache.prepare_shared_dir(str(open_folder))
    if ROOT:
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        os.chown(theirs, sandbox.NOBODY, sandbox.NOBODY)
        with pytest.raises(ConfigError, match="belongs to uid"):
            kernel_cache.prepare_shared_dir(str(theirs))


def test_the_engineer_hands_its_shared_cache_to_every_sandbox(tmp_path: Path) -> None:
    from asiarch.engineer.config import EngineerSettings
    from asiarch.engineer.service import EngineerServicer

    folder = os.path.realpath(tmp_path / "kernels")
    servicer = EngineerServicer(EngineerSettings(engineer_kernel_cache_dir=folder))
    assert servicer.pipeline.limits.kernel_cache_dir == servicer.kernels.shared_dir == folder
    assert os.path.isdir(folder)
    off = EngineerServicer(EngineerSettings(engineer_kernel_cache_dir=""))
    assert off.pipeline.limits.kernel_cache_dir is None and off.kernels.shared_dir is None


def test_warming_on_cpu_starts_nothing(monkeypatch: pytest.MonkeyPatch, shared: str) -> None:
    warmer = kernel_warm.KernelWarmer(shared, 2)
    asyncio.run(warmer.ready(SANDBOX_BUDGET))  # device cpu
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    asyncio.run(warmer.ready(resolve("smoke", device="cuda")))
    assert warmer.tasks == {} and snapshot(shared) == {}


def test_the_warm_step_builds_every_baseline_and_compiles_nothing_on_cpu() -> None:
    assert kernel_warm.warm(SANDBOX_BUDGET) == {"compiled": 0, "cached": 0}
    assert len(kernel_warm._baseline_layers()) == len(list(BASELINES.glob("*.py")))


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="tests the path without a GPU")
def test_a_warm_that_cannot_run_is_logged_and_tried_once(
    monkeypatch: pytest.MonkeyPatch, shared: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The GPU path on a machine without one: the warm process starts, finds no CUDA and says so.
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    warmer = kernel_warm.KernelWarmer(shared, 2)
    budget = resolve("smoke", device="cuda")

    async def twice() -> None:
        await warmer.ready(budget)
        await warmer.ready(budget)

    asyncio.run(twice())
    assert len(warmer.tasks) == 1
    logged = capsys.readouterr()
    assert "kernel cache warm failed" in logged.out + logged.err
    assert "no CUDA device here" in logged.out + logged.err
