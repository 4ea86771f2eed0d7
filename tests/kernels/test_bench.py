"""`asiarch bench kernels`: what it compares, how it words the result, and where it writes.

Speed itself is not tested (it is reported in docs/benchmarks.md); these tests
check that every implementation in the CPU table computes the same thing from
the same inputs, that the summary says "slower" when we are slower, and that
the table is written only where the user asked (or the repository's page).
"""

from __future__ import annotations

import importlib.metadata
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from support import REPO

from asiarch.common.cli import in_repository, main, output_path
from asiarch.kernels import bench


def fla_installed() -> bool:
    try:
        importlib.metadata.version("flash-linear-attention")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.parametrize(
    ("ours_ms", "other_ms", "expected"),
    [
        (10.0, 70.0, "asiarch is 7.0× faster than X"),
        (10.0, 7.0, "asiarch is 1.4× slower than X"),  # once printed as "0.7× faster"
        (30.0, 10.0, "asiarch is 3.0× slower than X"),
        (10.0, 10.3, "asiarch is about as fast as X"),
        (10.3, 10.0, "asiarch is about as fast as X"),
        (10.0, 10.6, "asiarch is 1.1× faster than X"),
    ],
)
def test_relative_speed_says_faster_or_slower(ours_ms: float, other_ms: float, expected: str) -> None:
    assert bench.relative_speed(ours_ms, other_ms, "X") == expected


def test_the_summary_compares_our_chunk_with_every_other_row() -> None:
    shape = (1, 64, 1, 16)
    rows = [
        bench.Row(shape, "delta_rule", "asiarch chunk (PyTorch)", "fwd", 20.0),
        bench.Row(shape, "delta_rule", "FLA delta_rule_chunkwise", "fwd", 10.0),
        bench.Row(shape, "delta_rule", "asiarch naive recurrence", "fwd", 200.0),
        bench.Row(shape, "delta_rule", "FLA delta_rule_recurrence", "fwd", None, "not installed"),
    ]
    lines = [line for line in bench.render(rows, "cpu", "cmd", 2).splitlines() if line.startswith("- (")]
    assert lines == [
        f"- {shape} delta_rule fwd: asiarch is 2.0× slower than FLA delta_rule_chunkwise",
        f"- {shape} delta_rule fwd: asiarch is 10.0× faster than asiarch naive recurrence",
    ]


def test_normalized_rows_are_compared_with_normalized_rows() -> None:
    shape, normalized = (32, 2048, 4, 128), bench.NORMALIZED
    rows = [
        bench.Row(shape, "linear_attn", "asiarch chunk (Triton)", "fwd", 0.5),
        bench.Row(shape, "linear_attn", "FLA chunk", "fwd", 1.0),
        bench.Row(shape, "linear_attn", f"asiarch chunk (Triton) {normalized}", "fwd", 0.6),
        bench.Row(shape, "linear_attn", f"FLA chunk {normalized}", "fwd", 1.8),
    ]
    lines = [line for line in bench.render(rows, "cpu", "cmd", 2).splitlines() if line.startswith("- (")]
    assert lines == [
        f"- {shape} linear_attn fwd: asiarch is 2.0× faster than FLA chunk",
        f"- {shape} linear_attn fwd: asiarch is 3.0× faster than FLA chunk {normalized}",
    ]


def test_a_failing_implementation_becomes_a_note() -> None:
    def refuse() -> float:
        raise AssertionError("no float32 | please use bfloat16\nsecond line")

    assert bench.attempt(refuse) == (None, "failed: AssertionError: no float32 / please use bfloat16")
    assert bench.attempt(lambda x: x * 2, 1.5) == (3.0, "")


@pytest.mark.slow
@pytest.mark.parametrize("family", bench.FAMILIES)
def test_every_cpu_implementation_computes_the_same_thing(family: str) -> None:
    """Like with like: each adapter passes the same inputs in the order its function expects."""
    torch.manual_seed(0)
    x = bench.make_inputs((2, 128, 2, 32), torch.float32, "cpu")
    reference = bench.ours(family, "naive_recurrent")(x)
    candidates = bench.cpu_candidates(family)
    fla = [c for c in candidates if c.name.startswith("FLA ")]
    assert len(fla) == 2
    if fla_installed():
        # Installed: both FLA references must be found and timed, not noted as missing.
        assert not [c for c in fla if isinstance(c.kernel, str)], fla
    else:
        assert {c.kernel for c in fla} == {"flash-linear-attention not installed"}
    for c in candidates:
        if isinstance(c.kernel, str):
            continue
        out = c.kernel(x)
        err = ((out - reference).norm() / reference.norm()).item()
        assert out.shape == reference.shape and err < 1e-5, (c.name, err)
        leaves = bench.with_grad(x)
        c.kernel(leaves).sum().backward()
        grads = [leaf.grad for leaf in leaves.values() if leaf.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), c.name


def test_the_repository_root_is_recognised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert in_repository()
    monkeypatch.chdir(tmp_path)
    assert not in_repository()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "someone-else"\n')
    assert not in_repository()
    (tmp_path / "pyproject.toml").write_text("not toml [")
    assert not in_repository()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "asiarch"\n')
    assert in_repository()
    assert output_path(None, "benchmarks.md") == Path("docs") / "benchmarks.md"


def fake_rows(repeats: int, quick: bool) -> list[bench.Row]:
    return [bench.Row((1, 64, 1, 16), "linear_attn", "asiarch chunk (PyTorch)", "fwd", 1.0)]


def test_outside_the_repository_it_writes_to_a_new_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "cpu_rows", fake_rows)
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "kernels", "--quick"]) == 0
    assert list(tmp_path.iterdir()) == [], "wrote into the current directory"
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("written to ")
    written = Path(last.removeprefix("written to "))
    try:
        assert written.name == "benchmarks.md" and written.parent.name.startswith("asiarch-benchmarks-")
        assert "<!-- kernels:cpu:start -->" in written.read_text()
    finally:
        shutil.rmtree(written.parent)


def test_out_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "cpu_rows", fake_rows)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "asiarch"\n')
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "elsewhere" / "kernels.md"
    assert main(["bench", "kernels", "--quick", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"written to {out}"
    assert "asiarch chunk (PyTorch)" in out.read_text()

    assert not (tmp_path / "docs").exists()
    # From the repository's root, without --out: its own page.
    assert main(["bench", "kernels", "--quick"]) == 0
    page = tmp_path / "docs" / "benchmarks.md"
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"written to {page}"
    assert "<!-- kernels:cpu:start -->" in page.read_text()
    # --no-write: nothing is written, nothing is claimed.
    page.unlink()
    assert main(["bench", "kernels", "--quick", "--no-write"]) == 0
    assert "written to" not in capsys.readouterr().out and not page.exists()


def test_each_row_is_printed_as_it_is_measured_before_the_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    printed_before: list[str] = []

    def rows(repeats: int, quick: bool) -> Iterator[bench.Row]:
        yield bench.Row((1, 64, 1, 16), "linear_attn", "asiarch chunk (PyTorch)", "fwd", 1.25)
        printed_before.append(capsys.readouterr().out)  # what the terminal had when the second began
        yield bench.Row((1, 64, 1, 16), "linear_attn", "FLA naive", "fwd", None, "not installed")

    monkeypatch.setattr(bench, "cpu_rows", rows)
    assert main(["bench", "kernels", "--quick", "--no-write"]) == 0
    assert printed_before == ["(1, 64, 1, 16) linear_attn asiarch chunk (PyTorch) fwd: 1.250 ms\n"]
    rest = capsys.readouterr().out
    assert rest.startswith("(1, 64, 1, 16) linear_attn FLA naive fwd: – (not installed)\n")
    assert "| linear_attn |" in rest  # then the table
