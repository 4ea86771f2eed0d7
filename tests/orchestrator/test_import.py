"""`asiarch import asi-arch`: ASI-Arch's released architectures as the seeds of a run.

First the reading of the released format and the mistakes refused before anything starts (no service);
then, end to end with real services at the smoke budget, the import of `asi_arch_sample.json` (a
synthetic file in the released format: two valid layers, one a child of the other; one with a syntax
error; one that reads the next token; one without its program) plus a layer in ASI-Arch's own style,
at bf16-autocast as ASI-Arch trains; its report and records, a second import (`--top 2`) that records
nothing twice, and `discover --resume` for one cycle, which trains the seeds and builds on one of them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import BIN, REPO
from test_discover import TERMINAL, discover, run_of_services, stored

from asiarch.common.errors import ConfigError
from asiarch.orchestrator.importer import Entry, read_entries, top, waves
from asiarch.v1 import common_pb2

SAMPLE = Path(__file__).with_name("asi_arch_sample.json")
REFUSED_WITHIN_S = 30  # a refusal comes before anything starts: a second or so, on a loaded machine too


def names(entries: list[Entry]) -> list[str]:
    return [e.name for e in entries]


# --- reading the released format ---


def test_the_released_format_is_read_with_names_programs_ideas_and_links() -> None:
    entries = read_entries(SAMPLE)
    assert names(entries) == [
        "delta_net_mini",
        "delta_net_mini_gate",
        "delta_net_unbalanced",
        "delta_net_lookahead",
        "delta_net_lost_program",
    ]
    gate = entries[1]
    assert (gate.index, gate.parent, gate.score) == (102, 101, 2.34)
    assert "class DeltaNet(nn.Module)" in gate.program
    # The idea text: ASI-Arch's one-line summary, then its motivation.
    assert gate.motivation.startswith("Output gating on top of the delta-rule memory")
    assert "suppress stale memory reads" in gate.motivation
    assert entries[0].parent is None and not entries[0].problem
    assert entries[4].problem == "no 'program' (the layer's source)" and entries[4].program == ""


def test_other_shapes_of_input_are_read_too(tmp_path: Path) -> None:
    program = "import torch\nclass DeltaNet(torch.nn.Module):\n    pass\n"
    by_name = tmp_path / "by_name.json"
    by_name.write_text(json.dumps({"alpha": {"program": program}, "beta": {"program": program, "index": 3}}))
    assert names(read_entries(by_name)) == ["alpha", "beta"]
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"name": "one", "program": program}))
    assert names(read_entries(single)) == ["one"]
    layers = tmp_path / "layers"
    layers.mkdir()
    (layers / "b_layer.py").write_text('"""Why b should work."""\n' + program)
    (layers / "a layer.py").write_text(program)
    entries = read_entries(layers)
    assert names(entries) == ["a-layer", "b_layer"]  # a proposal name is [A-Za-z0-9_.-]
    assert entries[1].motivation == "Why b should work." and entries[1].program.endswith(program)


def test_entries_that_cannot_be_imported_as_given_are_kept_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "odd.json"
    program = "class DeltaNet: pass"
    path.write_text(
        json.dumps(
            [
                {"name": "same", "program": program},
                {"name": "same", "program": program + "\n"},
                {"name": "../../etc", "program": ""},
                42,
                {"name_new": "OnlyNewName", "program": program, "parent": "7", "score": "high"},
            ]
        )
    )
    entries = read_entries(path)
    assert names(entries) == ["same", "same-2", "etc", "entry-4", "OnlyNewName"]
    assert [bool(e.problem) for e in entries] == [False, False, True, True, False]
    assert entries[3].problem == "entry is a JSON int, not an object"
    assert (entries[4].parent, entries[4].score) == (None, None)  # not numbers: not guessed


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a JSON file"),
        ("3.5", "expected a JSON list of architectures"),
        ('"x"', "found a JSON str"),
    ],
)
def test_an_unreadable_input_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "106.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as raised:
        read_entries(path)
    assert str(path) in str(raised.value)


def test_parents_come_before_their_children_and_a_loop_of_links_still_ends() -> None:
    def entry(position: int, index: int, parent: int | None) -> Entry:
        return Entry(position, f"e{position}", "x", "", index=index, parent=parent)

    rounds = waves([entry(1, 30, 20), entry(2, 20, 10), entry(3, 10, None), entry(4, 40, 99)])
    assert [names(r) for r in rounds] == [["e3", "e4"], ["e2"], ["e1"]]
    looped = waves([entry(1, 1, 2), entry(2, 2, 1), entry(3, 3, 3)])
    assert sorted(name for r in looped for name in names(r)) == ["e1", "e2", "e3"]


def test_top_keeps_the_best_scores_and_returns_the_rest() -> None:
    entries = read_entries(SAMPLE)
    kept, rest = top(entries, 2)
    assert names(kept) == ["delta_net_mini_gate", "delta_net_lookahead"]  # scores 2.34 and 2.90
    assert len(rest) == 3 and top(entries, None) == (entries, [])


def test_a_missing_file_is_refused_before_anything_starts(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "asiarch"), "import", "asi-arch", str(tmp_path / "106.json"), "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "106.json: no such file or directory" in result.stderr
    assert time.monotonic() - started < REFUSED_WITHIN_S
    assert not run_dir.exists()


# --- end to end ---

# ASI-Arch's programs cast to bf16 and ASI-Arch trains under bf16 autocast: the import validates, and
# discover trains, with that precision.
BF16 = ("--precision", "bf16-autocast")
SEEDS = {"delta_net_mini", "delta_net_mini_gate", "delta_net_asi_style"}


def released_file(folder: Path) -> Path:
    """The sample plus a layer written in ASI-Arch's style (tests/engineer/asi_arch_style.py: a bare
    @torch.compile kernel casting to bf16, TYPE_CHECKING imports, FLA utilities) whose parent, as for
    most of ASI-Arch's 106, is not in the file; written under the release's file name."""
    spec = importlib.util.spec_from_file_location("asi_arch_style", REPO / "tests/engineer/asi_arch_style.py")
    assert spec is not None and spec.loader is not None
    style = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(style)
    entry = {
        "name": "delta_net_asi_style",
        "program": style.PROGRAM,
        "motivation": "A sparsemax gate per head chooses between the delta memory and the local value path.",
        "summary": "Sparse routing between memory and local paths.",
        "index": 106,
        "parent": 1475,
        "score": 2.6,
    }
    path = folder / "106.json"
    path.write_text(json.dumps([*json.loads(SAMPLE.read_text()), entry], indent=2))
    return path


def run_import(source: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "asiarch"), "import", "asi-arch", str(source), "--run-dir", str(run_dir)]
    result = subprocess.run(
        [*command, "--budget", "smoke", *BF16, *extra], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@dataclass
class Imported:
    source: Path
    run_dir: Path
    output: str
    report: dict
    again: str
    again_report: dict
    discovered: str


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Imported:
    folder = tmp_path_factory.mktemp("import")
    source, run_dir = released_file(folder), folder / "asi"
    first = run_import(source, run_dir)
    report = json.loads((run_dir / "import-report.json").read_text())
    again_path = run_dir / "again.json"
    again = run_import(source, run_dir, "--top", "2", "--report", str(again_path))
    result = subprocess.run(
        discover(run_dir, "--resume", "--cycles", "1", "--confirm-seeds", "0", *BF16),
        capture_output=True,
        text=True,
        timeout=900,
        # Seconds the test does not need to spend: wall-clock limits scaled to this machine's speed and
        # the cognition base, which neither the seeds' evaluation nor a DSL proposal reads.
        env={**os.environ, "ASIARCH_ENGINEER_CALIBRATE": "false", "ASIARCH_ANALYST_INGEST_BUILTIN": "false"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    again_report = json.loads(again_path.read_text())
    return Imported(source, run_dir, first.stdout, report, again.stdout, again_report, result.stdout)


@run_of_services
def test_every_entry_is_reported_with_its_outcome_stage_and_reason(imported: Imported) -> None:
    rows = {row["name"]: row for row in imported.report["entries"]}
    assert len(rows) == 6 and {n for n, row in rows.items() if row["status"] == "imported"} == SEEDS
    assert imported.report["counts"]["invalid"] == 3 and imported.report["precision"] == "bf16-autocast"
    assert rows["delta_net_mini_gate"]["parent_id"] == "asi.seed.delta_net_mini"
    outside = rows["delta_net_asi_style"]
    assert (
        outside["parent_id"] == "" and outside["note"] == "parent index 1475 is not in the file: not linked"
    )
    broken = rows["delta_net_unbalanced"]
    assert (broken["status"], broken["stage"], broken["check"]) == (
        "invalid",
        "static checks",
        "static.parse",
    )
    assert broken["line"] > 0 and "never closed" in broken["reason"]
    peeking = rows["delta_net_lookahead"]
    assert (peeking["stage"], peeking["check"]) == ("functional checks", "functional.causality")
    assert "future" in peeking["reason"]
    lost = rows["delta_net_lost_program"]
    assert (lost["stage"], lost["reason"]) == ("input", "no 'program' (the layer's source)")
    # The table on stdout says the same, one row per entry.
    for name, row in rows.items():
        assert name in imported.output and row["status"] in imported.output
    assert "static.parse" in imported.output and "functional.causality" in imported.output
    assert "--budget smoke --precision bf16-autocast" in imported.output  # how to go on, the same way


@run_of_services
def test_a_second_import_records_nothing_twice_and_top_skips_the_rest(imported: Imported) -> None:
    rows = {row["name"]: row for row in imported.again_report["entries"]}
    # --top 2: the two best scores of the file (2.90 and 2.6); the others are reported, not dropped.
    assert rows["delta_net_asi_style"]["status"] == "already recorded"
    assert rows["delta_net_lookahead"]["status"] == "invalid"  # never recorded, so checked again
    others = ("delta_net_mini", "delta_net_mini_gate", "delta_net_unbalanced", "delta_net_lost_program")
    assert [rows[n]["status"] for n in others] == ["skipped"] * 4
    assert "already recorded" in imported.again and "skipped" in imported.again
    metadata = json.loads((imported.run_dir / "run.json").read_text())
    assert [i["counts"]["imported"] for i in metadata["imports"]] == [3, 0]


@run_of_services
def test_the_seeds_are_recorded_as_published_then_trained_by_discover(imported: Imported) -> None:
    experiments = {e.id: e for e in stored(imported.run_dir) if not e.replicate_of}
    published = {entry["name"]: entry for entry in json.loads(imported.source.read_text())}
    for name in SEEDS:
        seed = experiments[f"asi.seed.{name}"]
        assert seed.cycle == 0 and not seed.is_baseline
        assert seed.proposal.source.module_source == published[name]["program"]  # as published
        assert seed.proposal.motivation.endswith(published[name]["motivation"])
        assert seed.proposal.origin == common_pb2.PROPOSAL_ORIGIN_MANUAL
        assert seed.proposal.generator.startswith("import:asi-arch:106.json#")
        # discover --resume trained it as published (no repair), scored against the run's baseline.
        assert seed.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED, seed.evaluation.failure_reason
        assert not seed.evaluation.repairs and seed.fitness.baseline_id == "asi.base.deltanet"
        assert seed.evaluation.budget.precision == common_pb2.PRECISION_BF16_AUTOCAST
    assert list(experiments["asi.seed.delta_net_mini_gate"].parent_ids) == ["asi.seed.delta_net_mini"]
    assert not experiments["asi.seed.delta_net_mini"].parent_ids
    assert not experiments["asi.seed.delta_net_asi_style"].parent_ids  # its parent is not in the file
    assert "evaluating 3 imported seed(s)" in imported.discovered


@run_of_services
def test_discover_resume_searches_from_the_imported_seeds(imported: Imported) -> None:
    experiments = [e for e in stored(imported.run_dir) if not e.replicate_of]
    assert all(e.status in TERMINAL for e in experiments)
    [candidate] = [e for e in experiments if e.cycle == 1]
    assert candidate.parent_ids[0] in {f"asi.seed.{name}" for name in SEEDS}
    assert sum(e.is_baseline for e in experiments) == 4  # the yardsticks were measured in the same run
    metadata = json.loads((imported.run_dir / "run.json").read_text())
    assert metadata["state"] == "finished" and metadata["cycles_done"] == 1
