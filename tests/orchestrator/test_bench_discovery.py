"""`asiarch bench discovery`: its numbers from stats.json files written here (no services), the page it
writes, what it refuses before starting, its CPU meter; then one real benchmark (two strategies, one run of
one cycle, smoke budget) that starts the services once, writes the page and the plot, and a second
invocation that trains nothing and skips the done runs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import BIN

from asiarch.analyst.repository import ExperimentRepository
from asiarch.analyst.store import EmbeddedDatabase
from asiarch.common.errors import ConfigError
from asiarch.orchestrator.bench import page
from asiarch.orchestrator.bench.cli import distinct_designs
from asiarch.orchestrator.bench.numbers import (
    BenchRun,
    best_by_cycle,
    headline,
    read_run,
    strategy_rows,
)
from asiarch.orchestrator.bench.runs import (
    Plan,
    benchmark_run,
    collect,
    descendants,
    done,
    tree_cpu_seconds,
)
from asiarch.orchestrator.cli import _stopped_run
from asiarch.orchestrator.stats import Correlation, cpu_seconds
from asiarch.v1 import analyst_pb2, common_pb2


def cycle(number: int, **given: Any) -> dict[str, Any]:
    """A stats.json cycle: 4 proposals, 1 duplicate, 3 evaluated, 2 valid, nothing confirmed, 100 s wall of
    which 60 s in the engineer, 200 s CPU; `given` overrides."""
    entry: dict[str, Any] = {
        "cycle": number,
        "started": 1_700_000_000.0 + number * 100,
        "wall_seconds": 100.0,
        "engineer_seconds": 60.0,
        "proposals": 4,
        "duplicates": 1,
        "rejected": {"static": 1, "functional": 0, "proxy": 0},
        "evaluated": 3,
        "valid": 2,
        "confirmations": 0,
        "confirmed": 0,
        "best_confirmed_improvement": None,
        "cpu_seconds": 200.0,
    }
    return entry | given


def write_stats(run_dir: Path, strategy: str, cycles: list[dict[str, Any]], **measured: Any) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    stats = {
        "version": 1,
        "run_id": f"bench.{strategy}.{run_dir.name}",
        "strategy": strategy,
        "budget": "smoke",
        "parallel": 1,
        "cycles": cycles,
    }
    (run_dir / "stats.json").write_text(json.dumps(stats))
    if measured:
        (run_dir / "bench.json").write_text(json.dumps(measured))
    return run_dir


def runs_of(tmp_path: Path, plan: dict[str, list[list[dict[str, Any]]]]) -> list[BenchRun]:
    """Runs of each strategy, read back from the stats.json files written for them."""
    found = []
    for strategy, runs in plan.items():
        for index, cycles in enumerate(runs):
            run_dir = write_stats(tmp_path / strategy / f"r{index}", strategy, cycles)
            stats = read_run(run_dir, strategy, index)
            assert stats is not None
            found.append(stats)
    return found


def two_cycles(best: float | None = None, confirmed: int = 0) -> list[dict[str, Any]]:
    return [cycle(1), cycle(2, best_confirmed_improvement=best, confirmed=confirmed)]


# --- the numbers ---


def test_a_strategy_row_averages_its_runs_with_their_spread(tmp_path: Path) -> None:
    runs = runs_of(
        tmp_path,
        {
            "hgm": [
                two_cycles(best=0.02, confirmed=1),
                [cycle(1, valid=3), cycle(2, best_confirmed_improvement=0.04, confirmed=2, valid=3)],
            ]
        },
    )
    (row,) = strategy_rows(runs, ["hgm"], cycles=2)
    assert (row.started, row.done, row.found) == (2, 2, 2)
    assert row["valid_rate"].mean == pytest.approx((4 / 6 + 6 / 6) / 2)
    assert row["duplicate_rate"].mean == pytest.approx(0.25) and row["duplicate_rate"].sd == pytest.approx(0)
    assert row["best"].mean == pytest.approx(0.03) and row["best"].sd == pytest.approx(0.0141421, rel=1e-4)
    # 1 and 2 confirmed in 400 s of CPU each: 9 and 18 per CPU-hour.
    assert row["confirmed_per_cpu_hour"].mean == pytest.approx(13.5)
    assert row["wall_per_cycle"].mean == pytest.approx(100)
    assert row["outside_engineer"].mean == pytest.approx(0.4)


def test_a_run_without_a_confirmed_improvement_counts_zero_and_is_not_said_to_have_found_one(
    tmp_path: Path,
) -> None:
    runs = runs_of(tmp_path, {"uct": [two_cycles(best=0.03, confirmed=1), two_cycles()]})
    (row,) = strategy_rows(runs, ["uct"], cycles=2)
    assert (row.done, row.found) == (2, 1)
    assert row["best"].mean == pytest.approx(0.015)
    assert row["confirmed_per_cpu_hour"].mean == pytest.approx(4.5)


def test_a_partial_run_is_started_not_done_and_stays_out_of_the_means(tmp_path: Path) -> None:
    runs = runs_of(tmp_path, {"pareto": [two_cycles(best=0.01, confirmed=1), [cycle(1, valid=0)]]})
    (row,) = strategy_rows(runs, ["pareto"], cycles=2)
    assert (row.started, row.done) == (2, 1)
    assert row["valid_rate"].mean == pytest.approx(4 / 6) and row["valid_rate"].sd is None
    assert "| pareto | 67% | 25% | 0.01 | 1/1 |" in "\n".join(page.strategy_table([row]))
    assert "| 1 (+1 partial) |" in "\n".join(page.strategy_table([row]))


def test_a_cycle_run_again_after_a_resume_is_counted_once_with_its_last_record(tmp_path: Path) -> None:
    run_dir = write_stats(tmp_path / "hgm" / "r0", "hgm", [cycle(1), cycle(2, valid=0), cycle(2, valid=3)])
    stats = read_run(run_dir, "hgm", 0)
    assert stats is not None
    assert stats.cycles_done == 2 and stats.total("valid") == 5


def test_cpu_time_the_loop_does_not_give_is_the_benchmarks_own_measurement(tmp_path: Path) -> None:
    measured = write_stats(
        tmp_path / "a", "hgm", [cycle(1, cpu_seconds=None), cycle(2)], cpu_seconds={"1": 50.0}
    )
    unmeasured = write_stats(tmp_path / "b", "hgm", [cycle(1, cpu_seconds=None), cycle(2)])
    assert read_run(measured, "hgm", 0).cpu_seconds == pytest.approx(250)  # type: ignore[union-attr]
    assert read_run(unmeasured, "hgm", 0).cpu_seconds is None  # type: ignore[union-attr]


def test_stats_of_another_version_are_refused(tmp_path: Path) -> None:
    run_dir = write_stats(tmp_path / "r0", "hgm", [cycle(1)])
    stats = json.loads((run_dir / "stats.json").read_text())
    (run_dir / "stats.json").write_text(json.dumps(stats | {"version": 2}))
    with pytest.raises(ValueError, match="version 2"):
        read_run(run_dir, "hgm", 0)


def test_the_best_so_far_curve_is_the_mean_over_runs_and_never_falls(tmp_path: Path) -> None:
    runs = runs_of(
        tmp_path,
        {
            "hgm": [
                [
                    cycle(1, best_confirmed_improvement=0.02),
                    cycle(2),
                    cycle(3, best_confirmed_improvement=0.01),
                ],
                [cycle(1), cycle(2, best_confirmed_improvement=0.04), cycle(3)],
            ]
        },
    )
    assert best_by_cycle(runs, "hgm") == pytest.approx([0.01, 0.03, 0.03])


# --- the headline ---


def test_the_headline_names_a_winner_beyond_the_spread_of_random(tmp_path: Path) -> None:
    runs = runs_of(
        tmp_path,
        {
            "hgm": [two_cycles(0.05, 1), two_cycles(0.06, 1)],
            "uct": [two_cycles(0.01, 1), two_cycles()],
            "random": [two_cycles(0.01, 1), two_cycles()],
        },
    )
    said = headline(strategy_rows(runs, ["hgm", "uct", "random"], cycles=2))
    assert said == (
        "hgm wins: 0.055 ± 0.00707 against random's 0.005 ± 0.00707 over 2 run(s), ahead by 0.05, "
        "beyond the spread (0.0141, the two sds added)."
    )


def test_the_headline_says_no_strategy_beats_random_within_the_spread(tmp_path: Path) -> None:
    runs = runs_of(
        tmp_path,
        {
            "hgm": [two_cycles(0.05, 1), two_cycles()],
            "random": [two_cycles(0.01, 1), two_cycles(0.02, 1)],
        },
    )
    said = headline(strategy_rows(runs, ["hgm", "random"], cycles=2))
    assert said.startswith(
        "No strategy beats random beyond the spread: the best, hgm (0.025 ± 0.0354 over 2 run(s), "
        "1 with one), is +0.01 against random's 0.015 ± 0.00707 over 2 run(s)"
    )


def test_the_headline_says_so_when_no_run_found_an_improvement(tmp_path: Path) -> None:
    runs = runs_of(tmp_path, {"hgm": [two_cycles()], "random": [two_cycles()]})
    said = headline(strategy_rows(runs, ["hgm", "random"], cycles=2))
    assert said == (
        "No run found a confirmed improvement over the strongest baseline (2 finished runs): "
        "no strategy beats random beyond the spread."
    )


def test_with_one_run_each_the_headline_says_the_spread_is_unknown(tmp_path: Path) -> None:
    runs = runs_of(tmp_path, {"hgm": [two_cycles(0.05, 1)], "random": [two_cycles()]})
    said = headline(strategy_rows(runs, ["hgm", "random"], cycles=2))
    assert said == (
        "hgm (0.05 over 1 run(s), 1 with one) against random's 0 over 1 run(s): +0.05; "
        "with one run each the spread is unknown."
    )


# --- the page ---


def test_the_proxy_table_says_which_proxy_clears_the_bar_of_rho_half_on_thirty() -> None:
    table = "\n".join(
        page.proxy_table(
            {
                "grad_norm": Correlation(0.62, 0.1, 40),
                "output_rank": Correlation(0.7, 0.5, 29),
                "loss_slope": Correlation(0.49, 0.8, 100),
                "jacob_cov": Correlation(None, None, 2),
            }
        )
    )
    assert "| grad_norm | +0.62 | +0.10 | 40 | yes |" in table
    assert "| output_rank | +0.70 | +0.50 | 29 | no |" in table
    assert "| loss_slope | +0.49 | +0.80 | 100 | no |" in table
    assert "| jacob_cov | – | – | 2 | no |" in table


def test_proxies_count_each_design_once_though_every_run_retrains_the_baselines() -> None:
    def experiment(run: str, source: str, status: int) -> common_pb2.Experiment:
        proposal = common_pb2.Proposal(source=common_pb2.ArchitectureSource(module_source=source))
        return common_pb2.Experiment(id=f"{run}.x", proposal=proposal, status=status)

    failed, succeeded = common_pb2.EXPERIMENT_STATUS_FAILED, common_pb2.EXPERIMENT_STATUS_SUCCEEDED
    kept = distinct_designs(
        [
            experiment("r0", "x = 1\n", failed),
            experiment("r1", "x = 1  # the same layer\n", succeeded),
            experiment("r2", "x = 1\n", succeeded),
            experiment("r0", "x = 2\n", succeeded),
        ]
    )
    assert [(e.id, e.status) for e in kept] == [("r1.x", succeeded), ("r0.x", succeeded)]


def setting(**given: Any) -> page.Setting:
    values: dict[str, Any] = {
        "command": "asiarch bench discovery --runs=2",
        "budget": "smoke",
        "cycles": 2,
        "runs": 2,
        "cores": 2,
        "date": "2026-12-05",
        "wall_seconds": 7200.0,
        "cpu_seconds": 10800.0,
    }
    return page.Setting(**(values | given))


def test_the_page_keeps_its_hand_written_text_and_links_the_plot_it_writes(tmp_path: Path) -> None:
    runs = runs_of(tmp_path / "runs", {"hgm": [two_cycles(0.05, 1)], "random": [two_cycles()]})
    out = tmp_path / "docs" / "discovery.md"
    out.parent.mkdir()
    out.write_text(
        "# Discovery\n\nWritten by hand.\n\n<!-- discovery:start -->\nold\n<!-- discovery:end -->\n\nAfter.\n"
    )
    plot = page.write(out, setting(), runs, ["hgm", "random"], {"grad_norm": Correlation(0.6, 0.2, 31)})
    text = out.read_text()
    assert plot == tmp_path / "docs" / "discovery-best.svg" and plot.read_text().startswith("<?xml")
    assert "Written by hand." in text and text.rstrip().endswith("After.") and "\nold\n" not in text
    assert "![best confirmed improvement by cycle](discovery-best.svg)" in text
    assert "`asiarch bench discovery --runs=2` on 2 cores, 2026-12-05; 2.00 h wall and 3.00 h CPU" in text
    assert "| random (control) |" in text and "| grad_norm | +0.60 | +0.20 | 31 | yes |" in text


def test_a_new_page_gets_a_title(tmp_path: Path) -> None:
    out = tmp_path / "discovery.md"
    page.write(out, setting(cpu_seconds=None), [], ["hgm", "random"], {})
    text = out.read_text()
    assert text.startswith("# How well does it discover?")
    assert "and unknown CPU in the runs" in text
    assert "No strategy has a finished run yet." in text


# --- before anything starts ---


def plan(bench_dir: Path, **given: Any) -> Plan:
    values: dict[str, Any] = {
        "bench_dir": bench_dir,
        "strategies": ("hgm", "random"),
        "runs": 2,
        "cycles": 3,
        "budget": "smoke",
        "parallel": 1,
        "confirm_seeds": 0,
        "confirm_rung": 2,
        "seed": 0,
        "llm": "none",
        "mode": "dsl",
    }
    return Plan(**(values | given))


def test_runs_go_round_by_round_with_paired_ids_and_directories(tmp_path: Path) -> None:
    made = plan(tmp_path / "b1")
    assert made.order() == [("hgm", 0), ("random", 0), ("hgm", 1), ("random", 1)]
    assert made.run_id("random", 1) == "b1.random.r1"
    assert made.run_dir("random", 1) == tmp_path / "b1" / "random" / "r1"


def test_asiarch_confirm_takes_a_benchmarks_run_with_its_id_stores_budget_and_seed(tmp_path: Path) -> None:
    made = plan(tmp_path / "b1", seed=4)
    made.check()
    run, refusal = _stopped_run(made.run_dir("random", 1))
    assert refusal == "" and run == benchmark_run(made.run_dir("random", 1))
    assert run.run_id == made.run_id("random", 1) == "b1.random.r1"
    assert run.run_dir == tmp_path / "b1"  # the services start on the benchmark's stores
    assert run.metadata["options"] == {"budget": "smoke", "seed": 5, "precision": None}
    for elsewhere in (tmp_path / "b1" / "random", tmp_path / "b2" / "hgm" / "r0"):  # not a run; no plan.json
        assert benchmark_run(elsewhere) is None
        assert "no run.json, no benchmark's plan.json" in _stopped_run(elsewhere)[1]


def test_a_benchmark_is_not_continued_with_another_budget_or_seed(tmp_path: Path) -> None:
    plan(tmp_path / "b").check()
    plan(tmp_path / "b", cycles=12, runs=3).check()  # more cycles and runs: the same benchmark, grown
    with pytest.raises(ConfigError, match=r"--bench-dir: .* budget 'smoke' \(now 'cpu'\)"):
        plan(tmp_path / "b", budget="cpu").check()
    with pytest.raises(ConfigError, match=r"seed 0 \(now 5\)"):
        plan(tmp_path / "b", seed=5).check()


def test_a_bench_dir_whose_name_makes_invalid_ids_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--bench-dir: its name 'my bench'"):
        plan(tmp_path / "my bench").check()
    assert not (tmp_path / "my bench").exists()


def test_a_strategy_the_local_selector_lacks_is_refused_before_anything_starts(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(BIN / "asiarch"),
            "bench",
            "discovery",
            "--strategies",
            "hgm,best-first",
            "--bench-dir",
            str(tmp_path / "b"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert (
        "'best-first' is not a strategy of the local selector" in result.stderr and "random" in result.stderr
    )
    assert not (tmp_path / "b").exists()


def test_done_runs_are_those_with_every_planned_cycle(tmp_path: Path) -> None:
    made = plan(tmp_path / "b", cycles=2)
    write_stats(made.run_dir("hgm", 0), "hgm", two_cycles())
    write_stats(made.run_dir("random", 0), "random", [cycle(1)])
    assert done(made, "hgm", 0) is not None
    assert done(made, "random", 0) is None and done(made, "hgm", 1) is None
    assert [(r.strategy, r.index) for r in collect(made)] == [("hgm", 0), ("random", 0)]


def test_the_cpu_meter_counts_a_child_that_exited_between_two_samples() -> None:
    before = tree_cpu_seconds()
    child = subprocess.Popen([sys.executable, "-c", "sum(i * i for i in range(4_000_000))"])
    _, _, usage = os.wait4(child.pid, 0)
    after = tree_cpu_seconds()
    assert before is not None and after is not None
    assert after - before >= usage.ru_utime + usage.ru_stime - 0.05


# --- a real benchmark ---


def benchmark(bench_dir: Path, out: Path, *more: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(BIN / "asiarch"),
        "bench",
        "discovery",
        "--strategies",
        "hgm,random",
        "--runs",
        "1",
        "--cycles",
        "1",
        "--confirm-seeds",
        "0",
        "--bench-dir",
        str(bench_dir),
        "--out",
        str(out),
        *more,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def recorded(bench_dir: Path) -> int:
    """Experiments in the benchmark's store, every run's and every replicate, read without an analyst."""

    async def count() -> int:
        database = EmbeddedDatabase(bench_dir / "store", attempts=1)
        try:
            repository = ExperimentRepository(database.collection("experiments"))
            _, _, total = await repository.page(
                "", [], analyst_pb2.EXPERIMENT_SORT_CREATED_ASC, 1, "", include_replicates=True
            )
            return total
        finally:
            await database.close()

    return asyncio.run(count())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_benchmark_runs_every_strategy_on_services_started_once_and_continues_without_retraining(
    tmp_path: Path,
) -> None:
    bench_dir, out = tmp_path / "bench", tmp_path / "docs" / "discovery.md"
    first = benchmark(bench_dir, out)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert first.stdout.count("started a local engineer") == 1
    assert (
        "r0 hgm: finished; 1 cycle(s)" in first.stdout and "r0 random: finished; 1 cycle(s)" in first.stdout
    )
    text = out.read_text()
    assert "`asiarch bench discovery --strategies=hgm,random --runs=1 --cycles=1 --budget=smoke" in text
    assert "| hgm |" in text and "| random (control) |" in text and "beats random" in text
    assert "![best confirmed improvement by cycle](discovery-best.svg)" in text
    assert (out.parent / "discovery-best.svg").read_text().startswith("<?xml")
    stats = {s: bench_dir / s / "r0" / "stats.json" for s in ("hgm", "random")}
    assert {json.loads(p.read_text())["run_id"] for p in stats.values()} == {
        "bench.hgm.r0",
        "bench.random.r0",
    }
    stamps, experiments = {s: p.stat().st_mtime_ns for s, p in stats.items()}, recorded(bench_dir)

    again = benchmark(bench_dir, out)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (
        "r0 hgm: done before, skipped" in again.stdout and "r0 random: done before, skipped" in again.stdout
    )
    assert {s: p.stat().st_mtime_ns for s, p in stats.items()} == stamps
    assert recorded(bench_dir) == experiments
    assert "| random (control) |" in out.read_text()

    # --page-only: a benchmark planned larger (a second round) writes its page from what is measured and
    # trains nothing.
    out.unlink()
    page = benchmark(bench_dir, out, "--runs", "2", "--page-only")
    assert page.returncode == 0, page.stdout[-3000:] + page.stderr[-3000:]
    assert "r1 hgm: no cycle recorded" in page.stdout and recorded(bench_dir) == experiments
    assert "| hgm |" in out.read_text() and "--runs=2" in out.read_text()


def test_the_cpu_meter_counts_a_live_child_and_its_children() -> None:
    before = tree_cpu_seconds()
    # A grandchild that has used CPU and is still alive when the sample is taken.
    burn = "sum(i * i for i in range(4_000_000)); print('done', flush=True); input()"
    outer = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {burn!r}])"
    child = subprocess.Popen(
        [sys.executable, "-c", outer], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "done\n"
        (grandchild,) = descendants(child.pid)
        used = cpu_seconds([grandchild])
        after = tree_cpu_seconds()
    finally:
        child.communicate("\n", timeout=60)
    assert before is not None and after is not None and used is not None
    assert after - before >= used - 0.05
