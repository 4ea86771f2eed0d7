"""`asiarch import asi-arch FILE`: ASI-Arch's published architectures as the seed population of a run.

What it guarantees:

- **Nothing is dropped silently.** Every entry of the input ends in exactly one outcome: `imported`,
  `already recorded` (an earlier import of the same entry), `duplicate` (the same design as another
  experiment of the run), `skipped` (outside `--top N`) or `invalid`, the last with the stage that
  refused it (`input`, `static checks`, `functional checks`, `request`, `record`), the check, the line
  and the reason. All of them are in the table printed on stdout and in the JSON report
  (`--report`, by default `RUN_DIR/import-report.json`).
- **Only what a real engineer validated is recorded**, as published: the engineer's Validate (static
  checks, then the sandboxed functional checks at the sizes of `--budget`), no repair, no edit.
- **Seeds are recorded through the analyst** as PENDING experiments of the run at cycle 0, not
  baselines, with the ids `<run>.seed.<name>` (`loop.seed_id`): importing the same file again records
  and validates nothing twice. They are trained by `asiarch discover --resume`, after the baselines
  and with the run's budget (see `asiarch.orchestrator.loop`): fitness is only comparable when
  measured in the same run against the same baselines, and ASI-Arch's own scores come from another
  training setup. Import costs one Validate per entry (seconds); the training, one evaluation per
  seed, is paid once by `discover`, resumably and spread over its engineers (`--top N` bounds it).
- **Parent links**: an entry whose `parent` is the `index` of another entry of the file that is
  recorded gets it as parent (recorded first). A parent outside the file, or one that was not
  imported, is not linked; the report and the proposal's generator say which it was.
- The run's `run.json` lists the import (source, budget, counts, report) and says how to continue.

The released format (GAIR-NLP/ASI-Arch, `data/106.json`) is a JSON list of objects: `name`,
`program` (a complete layer file defining `DeltaNet`), `motivation`, `summary`, `name_new`, `index`,
`parent` (an index or null), `score`, and fields with no place in an asiarch record (`result`, their
train/test numbers; `parameters`; `svg_picture`; `analysis`; `cognition`; `log`). Only `program` is
required. An object mapping names to entries, a single entry, a `.py` file or a directory of `.py`
layers (the module docstring as motivation) are read too.

The contract has no proposal origin for an imported design: seeds are recorded as
PROPOSAL_ORIGIN_MANUAL (submitted through the CLI) with the generator `import:asi-arch:FILE#N ...`.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asiarch.common import contract
from asiarch.common.cli import command_group
from asiarch.common.contract import DEFAULT_CLASS_NAME
from asiarch.common.errors import ConfigError

REPORT_NAME = "import-report.json"
NAME = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_NAME = 64
VALIDATE_TIMEOUT = 600.0
LIGHT_SERVICES = ("ASIARCH_ENGINEER_CALIBRATE", "ASIARCH_ANALYST_INGEST_BUILTIN")
OUTCOMES = ("imported", "already recorded", "duplicate", "skipped", "invalid")


@dataclass(frozen=True)
class Entry:
    """One architecture of the input, as read; `problem` says why it cannot be imported as given."""

    position: int  # 1-based place in the input
    name: str  # a proposal name: 1-64 characters of [A-Za-z0-9_.-], unique in the input
    program: str
    motivation: str
    index: int | None = None
    parent: int | None = None
    score: float | None = None
    problem: str = ""


@dataclass
class Outcome:
    """What became of one entry (a row of the table and of the report)."""

    position: int
    name: str
    index: int | None
    parent: int | None
    score: float | None
    status: str
    experiment_id: str = ""
    parent_id: str = ""
    stage: str = ""
    check: str = ""
    line: int = 0
    reason: str = ""
    note: str = ""

    @classmethod
    def of(cls, entry: Entry, status: str, **fields: Any) -> Outcome:
        return cls(entry.position, entry.name, entry.index, entry.parent, entry.score, status, **fields)


# --- reading the input ---


def read_entries(path: Path) -> list[Entry]:
    """The entries of a released JSON file, a `.py` layer or a directory of them; ConfigError (exit 2,
    before anything starts) when the input as a whole cannot be read."""
    if path.is_dir():
        return _python_entries(sorted(path.glob("*.py")))
    if not path.is_file():
        raise ConfigError(f"{path}: no such file or directory")
    if path.suffix == ".py":
        return _python_entries([path])
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a JSON file ({exc})") from None
    taken: set[str] = set()
    return [_entry(position, item, taken) for position, item in enumerate(_items(data, path), 1)]


def _items(data: Any, path: Path) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and "program" in data:
        return [data]
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        return [{"name": key, **value} for key, value in data.items()]
    raise ConfigError(
        f"{path}: expected a JSON list of architectures (ASI-Arch's data/106.json: objects with "
        f"'name', 'program', 'motivation', ...), found a JSON {type(data).__name__}"
    )


def _entry(position: int, item: Any, taken: set[str]) -> Entry:
    if not isinstance(item, dict):
        name = _unique(f"entry-{position}", position, taken)
        return Entry(position, name, "", "", problem=f"entry is a JSON {type(item).__name__}, not an object")
    given = next(
        (item[k] for k in ("name", "name_new") if isinstance(item.get(k), str) and item[k].strip()), ""
    )
    name = _unique(NAME.sub("-", given).strip("-.")[:MAX_NAME] or f"entry-{position}", position, taken)
    program = item.get("program")
    problem = "" if isinstance(program, str) and program.strip() else "no 'program' (the layer's source)"
    texts = [item.get(k) for k in ("summary", "motivation")]
    return Entry(
        position,
        name,
        program if isinstance(program, str) else "",
        "\n\n".join(t.strip() for t in texts if isinstance(t, str) and t.strip()),
        index=_integer(item.get("index")),
        parent=_integer(item.get("parent")),
        score=_number(item.get("score")),
        problem=problem,
    )


def _unique(name: str, position: int, taken: set[str]) -> str:
    """The name, or name-<position> when an earlier entry has it (ids and names must not collide)."""
    if name in taken:
        name = f"{name[: MAX_NAME - 8]}-{position}"
    taken.add(name)
    return name


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _python_entries(paths: Sequence[Path]) -> list[Entry]:
    taken: set[str] = set()
    entries = []
    for position, path in enumerate(paths, 1):
        source = path.read_text(encoding="utf-8", errors="replace")
        name = _unique(
            NAME.sub("-", path.stem).strip("-.")[:MAX_NAME] or f"entry-{position}", position, taken
        )
        entries.append(
            Entry(position, name, source, _docstring(source), problem="" if source.strip() else "empty file")
        )
    return entries


def _docstring(source: str) -> str:
    try:
        return (ast.get_docstring(ast.parse(source)) or "").strip()
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ""  # the engineer's static checks will say what is wrong with it


def top(entries: Sequence[Entry], count: int | None) -> tuple[list[Entry], list[Entry]]:
    """The `count` entries with the best score (unscored last; input order among equals), and the rest."""
    if count is None or count >= len(entries):
        return list(entries), []
    ranked = sorted(entries, key=lambda e: (e.score is None, -(e.score or 0.0), e.position))
    kept = {e.position for e in ranked[:count]}
    return [e for e in entries if e.position in kept], [e for e in entries if e.position not in kept]


def waves(entries: Sequence[Entry]) -> list[list[Entry]]:
    """The entries in rounds, each after the round holding its parent (the entry of the file whose
    `index` its `parent` names), so that parents are recorded before their children."""
    by_index: dict[int, Entry] = {}
    for entry in entries:
        if entry.index is not None:
            by_index.setdefault(entry.index, entry)

    def parent(entry: Entry) -> Entry | None:
        found = by_index.get(entry.parent) if entry.parent is not None else None
        return found if found is not entry else None

    placed: set[int] = set()
    remaining = list(entries)
    rounds = []
    while remaining:
        ready = [e for e in remaining if (p := parent(e)) is None or p.position in placed]
        ready = ready or remaining  # parent links in a loop: no order to keep
        rounds.append(ready)
        placed.update(e.position for e in ready)
        remaining = [e for e in remaining if e.position not in placed]
    return rounds


# --- validating and recording ---


class Importer:
    """Validates entries on the engineers and records the valid ones as the run's seeds."""

    def __init__(self, discovery: Any, budget: Any, source: Path, parallel: int, console: Any) -> None:
        self.discovery, self.budget, self.source, self.console = discovery, budget, source, console
        self.run_id: str = discovery.options.run_id
        self.engineers = itertools.cycle(discovery.stubs.engineers)
        self.gate = asyncio.Semaphore(parallel)
        self.recorded: set[str] = set()
        self.existing: dict[str, Any] = {}
        self.designs: dict[str, str] = {}  # design key -> what has that design
        self.ids: dict[int, tuple[str, str]] = {}  # ASI-Arch index -> (seed id, name)

    async def run(
        self, entries: Sequence[Entry], skipped: Iterable[Entry], every: Sequence[Entry]
    ) -> list[Outcome]:
        from asiarch.orchestrator.loop import design_key, seed_id

        self.existing = {e.id: e for e in await self.discovery.experiments()}
        self.recorded = set(self.existing)
        self.designs = {design_key(e.proposal): e.id for e in self.existing.values()}
        for entry in every:
            if entry.index is not None:
                self.ids.setdefault(entry.index, (seed_id(self.run_id, entry.name), entry.name))
        outcomes = [
            self._said(Outcome.of(e, "skipped", reason="not among the --top entries by the file's score"))
            for e in skipped
        ]
        for wave in waves(entries):
            outcomes += await asyncio.gather(*(self._one(entry) for entry in wave))
        return sorted(outcomes, key=lambda o: o.position)

    async def _one(self, entry: Entry) -> Outcome:
        from asiarch.orchestrator.loop import design_key, seed_id

        if entry.problem:
            return self._said(Outcome.of(entry, "invalid", stage="input", reason=entry.problem))
        experiment_id = seed_id(self.run_id, entry.name)
        proposal = self._proposal(entry)
        key = design_key(proposal)
        if experiment_id in self.existing:
            if design_key(self.existing[experiment_id].proposal) == key:
                return self._said(Outcome.of(entry, "already recorded", experiment_id=experiment_id))
            reason = f"the run's seed {experiment_id} has this name and another program: rename the entry"
            return self._said(Outcome.of(entry, "invalid", stage="input", reason=reason))
        if key in self.designs:
            reason = f"the same design as {self.designs[key]}"
            return self._said(Outcome.of(entry, "duplicate", reason=reason))
        self.designs[key] = f"entry {entry.position} ({entry.name})"  # claimed before the first await
        async with self.gate:
            failure = await self._validate(proposal)
        if failure:
            return self._said(Outcome.of(entry, "invalid", **failure))
        parent_id, note = self._parent(entry)
        failure = await self._record(entry, experiment_id, proposal, parent_id)
        if failure:
            return self._said(Outcome.of(entry, "invalid", **failure))
        self.recorded.add(experiment_id)
        outcome = Outcome.of(entry, "imported", experiment_id=experiment_id, parent_id=parent_id, note=note)
        return self._said(outcome)

    def _proposal(self, entry: Entry) -> Any:
        from asiarch.v1 import common_pb2

        where = f"import:asi-arch:{self.source.name}#{entry.position}"
        facts = [
            f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in (("index", entry.index), ("parent", entry.parent), ("score", entry.score))
            if v is not None
        ]
        return common_pb2.Proposal(
            name=entry.name,
            motivation=entry.motivation,
            source=common_pb2.ArchitectureSource(module_source=entry.program, class_name=DEFAULT_CLASS_NAME),
            origin=common_pb2.PROPOSAL_ORIGIN_MANUAL,  # the contract has no "imported" origin
            generator=" ".join([where, *facts]),
        )

    async def _validate(self, proposal: Any) -> dict[str, Any] | None:
        """None when the engineer finds the layer valid, else the failure's fields for the outcome."""
        import grpc

        from asiarch.orchestrator.retry import retrying
        from asiarch.v1 import engineer_pb2

        request = engineer_pb2.ValidateRequest(source=proposal.source, budget=self.budget)
        engineer = next(self.engineers)
        try:
            reply = await retrying(
                f"Engineer.Validate {proposal.name}",
                lambda: engineer.Validate(request, timeout=VALIDATE_TIMEOUT),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise  # the engineer's trouble (no sandbox, overloaded for good), not this entry's
            return {"stage": "request", "reason": f"INVALID_ARGUMENT: {exc.details()}"}
        if reply.valid:
            return None
        failed = next((check for check in reply.checks if not check.passed), None)
        if failed is None:
            return {"stage": "", "reason": reply.failure_reason or "invalid"}
        return {
            "stage": contract.stage_label(failed.stage),
            "check": failed.name,
            "line": failed.line,
            "reason": reply.failure_reason or failed.message,
        }

    def _parent(self, entry: Entry) -> tuple[str, str]:
        """The parent's id when the file's parent of the entry is recorded; else a note saying why not."""
        if entry.parent is None:
            return "", ""
        if entry.parent not in self.ids:
            return "", f"parent index {entry.parent} is not in the file: not linked"
        parent_id, name = self.ids[entry.parent]
        if parent_id not in self.recorded:
            return "", f"parent index {entry.parent} ({name}) was not imported: not linked"
        return parent_id, ""

    async def _record(
        self, entry: Entry, experiment_id: str, proposal: Any, parent_id: str
    ) -> dict[str, Any] | None:
        import grpc

        from asiarch.v1 import common_pb2

        experiment = common_pb2.Experiment(  # created_at is set by the analyst
            id=experiment_id,
            run_id=self.run_id,
            name=entry.name,
            parent_ids=[parent_id] if parent_id else [],
            cycle=0,
            status=common_pb2.EXPERIMENT_STATUS_PENDING,
            proposal=proposal,
        )
        try:
            await self.discovery.record(experiment)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            return {"stage": "record", "reason": f"the analyst refused it: {exc.details()}"}
        return None

    def _said(self, outcome: Outcome) -> Outcome:
        """One line per entry as soon as its outcome is known."""
        detail = outcome.experiment_id or outcome.reason
        if outcome.stage:
            detail = f"{outcome.stage}: {outcome.reason}"
        line = f"  {outcome.status:<16} {outcome.name[:40]:<40} {detail[:160]}"
        self.console.print(line, highlight=False, soft_wrap=True)
        return outcome


# --- the command ---


async def _import(args: argparse.Namespace) -> int:
    from asiarch.common.cli import precision_value
    from asiarch.common.config import load_settings
    from asiarch.common.contract import budget_presets
    from asiarch.common.logs import configure_logging
    from asiarch.orchestrator.access import choose_run_dir, live_analyst, read_run
    from asiarch.orchestrator.config import OrchestratorSettings
    from asiarch.orchestrator.loop import Discovery, Options
    from asiarch.orchestrator.progress import RichDisplay
    from asiarch.orchestrator.services import services
    from asiarch.v1 import common_pb2

    every = read_entries(args.source)  # an unreadable input costs nothing: no service has started
    if not every:
        raise ConfigError(f"{args.source}: no architectures in it")
    entries, skipped = top(every, args.top)
    settings = load_settings(OrchestratorSettings)
    configure_logging(settings.log_level, settings.log_format, service="import")
    run_dir = choose_run_dir(args.run_dir, args.run_id, resume=False)
    if live_analyst(run_dir) is not None:
        print(
            f"asiarch import: a discover is running on {run_dir}; import when it has stopped", file=sys.stderr
        )
        return 2
    run_id = args.run_id or read_run(run_dir).run_id
    _note_run(run_dir, run_id, None)  # the run id is on disk before anything is recorded under it
    display = RichDisplay()
    display.note(
        f"importing {len(entries)} of {len(every)} architecture(s) from {args.source} into run {run_id}"
    )
    budget = common_pb2.Budget(
        preset=budget_presets()[args.budget], precision=precision_value(args.precision)
    )
    # The services started here only validate and record PENDING seeds: the engineer trains nothing (no
    # step-time calibration to wait for) and the analyst needs no cognition base (discover's ingests it).
    for variable in LIGHT_SERVICES:
        os.environ.setdefault(variable, "false")

    def save(**_: Any) -> None:
        """run.json keeps the run's services: the ones started for an import are not the run's."""

    from asiarch.common.llm.factory import Backend  # not at the top: the parser loads no LLM layer

    no_llm = Backend.NONE.value  # import only validates and records: nothing to propose
    async with services(args, settings, run_dir, no_llm, display, save, evaluation_only=True) as (stubs, _):
        discovery = Discovery(
            Options(run_id=run_id, budget=args.budget, precision=args.precision), stubs, display
        )
        importer = Importer(discovery, budget, args.source, args.parallel, display.console)
        outcomes = await importer.run(entries, skipped, every)
    return _conclude(args, run_id, run_dir, outcomes, display.console)


def _conclude(
    args: argparse.Namespace, run_id: str, run_dir: Path, outcomes: Sequence[Outcome], console: Any
) -> int:
    """The report, run.json, the table and what to do next; exit 0 when the run has seeds from the file."""
    report = (args.report or run_dir / REPORT_NAME).resolve()
    counts = write_report(report, args, run_id, run_dir, outcomes)
    source = str(args.source.resolve())
    options = {"budget": args.budget, "precision": args.precision}
    _note_run(run_dir, run_id, {"source": source, **options, "counts": counts, "report": str(report)})
    console.print(outcome_table(outcomes))
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    console.print(f"{summary}; report: {report}", soft_wrap=True)  # a path is not broken across lines
    seeds = counts["imported"] + counts["already recorded"]
    if seeds:
        same = " ".join(f"--{k} {v}" for k, v in options.items() if v)  # validated as it will be trained
        console.print(f"next: asiarch discover --resume --run-dir {run_dir} {same}", soft_wrap=True)
    return 0 if seeds else 1


def outcome_table(outcomes: Sequence[Outcome]) -> Any:
    from rich.table import Table

    table = Table(title="Imported architectures", title_justify="left")
    for column in ("#", "name", "index", "parent", "outcome", "stage", "check", "reason / id"):
        table.add_column(column, overflow="fold")
    for o in outcomes:
        parent = o.parent_id or ("" if o.parent is None else f"({o.parent})")
        detail = o.reason or o.experiment_id
        table.add_row(
            str(o.position),
            o.name,
            "" if o.index is None else str(o.index),
            parent,
            o.status,
            o.stage,
            o.check + (f" line {o.line}" if o.line else ""),
            (detail + (f"; {o.note}" if o.note else ""))[:200],
        )
    return table


def write_report(
    path: Path, args: argparse.Namespace, run_id: str, run_dir: Path, outcomes: Sequence[Outcome]
) -> dict[str, int]:
    """The JSON report: every entry's outcome in full; returns the counts per outcome."""
    counts = {status: sum(o.status == status for o in outcomes) for status in OUTCOMES}
    document = {
        "source": str(args.source.resolve()),
        "format": "asi-arch",
        "run_id": run_id,
        "run_dir": str(run_dir.resolve()),
        "budget": args.budget,
        "precision": args.precision,
        "written_at": datetime.now(UTC).isoformat(),
        "counts": counts,
        "entries": [asdict(o) for o in outcomes],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return counts


def _note_run(run_dir: Path, run_id: str, imported: dict[str, Any] | None) -> None:
    """run.json: the run id, a state when the run has none yet, and the import with how to continue."""
    from asiarch.orchestrator.access import read_run, write_run

    metadata = read_run(run_dir).metadata
    now = datetime.now(UTC).isoformat()
    metadata.update(run_id=run_id, updated_at=now)
    metadata.setdefault("state", "imported")
    if imported is not None:
        metadata.setdefault("imports", []).append({**imported, "at": now})
        source, seeds = Path(imported["source"]).name, imported["counts"]["imported"]
        metadata["message"] = (
            f"{seeds} seed(s) imported from {source}; search from the run's seeds with: "
            f"asiarch discover --resume --run-dir {run_dir}"
            if seeds
            else f"nothing imported from {source}: see {imported['report']}"
        )
    write_run(run_dir, metadata)


def register(commands: argparse._SubParsersAction) -> None:
    targets = command_group(
        commands, "import", help="record architectures published elsewhere as the seeds of a run"
    )
    cmd = targets.add_parser(
        "asi-arch",
        help="ASI-Arch's released architectures (data/106.json) as the seed population of a run",
        description=(
            "Validate every architecture of ASI-Arch's released JSON (or a .py layer, or a directory of "
            "them) on an engineer and record the valid ones, as published, as the seeds of a run: name, "
            "motivation, source and the file's parent links. `asiarch discover --resume` then trains them "
            "with the run's budget and searches from them. Every entry is reported: imported, already "
            "recorded, duplicate, skipped or invalid with the stage and the reason (a table, and a JSON "
            "report)."
        ),
    )
    _add_options(cmd)
    cmd.set_defaults(run=lambda args: asyncio.run(_import(args)))


def _add_options(cmd: argparse.ArgumentParser) -> None:
    from asiarch.orchestrator.cli import add_budget, add_engineers, add_precision, positive

    cmd.add_argument(
        "source", type=Path, metavar="FILE", help="the released JSON, a .py layer or a directory of them"
    )
    cmd.add_argument(
        "--run-dir", type=Path, help="the run to seed (default: runs/<--run-id>, else runs/run-<UTC time>)"
    )
    cmd.add_argument("--run-id", help="run id (default: the run's, else the run directory's name)")
    add_budget(
        cmd,
        "sizes of the functional checks and the parameter limit: give the budget discover will run "
        "with; %(choices)s",
    )
    add_precision(
        cmd,
        "precision of the functional checks, as discover will train: %(choices)s; ASI-Arch's programs "
        "cast to bf16 and need bf16-autocast (default: the budget preset's)",
    )
    cmd.add_argument(
        "--top",
        type=positive(int),
        metavar="N",
        help="only the N entries with the best score in the file "
        "(the others are reported skipped; default: all)",
    )
    cmd.add_argument("--report", type=Path, help=f"the JSON report (default: RUN_DIR/{REPORT_NAME})")
    cmd.add_argument(
        "--parallel", type=positive(int), default=1, help="validations at once (spread over --engineer)"
    )
    add_engineers(cmd)
    cmd.add_argument(
        "--analyst",
        help="host:port of the run's analyst (default: $ASIARCH_ANALYST_ADDRESS, else a "
        "local one on the run directory)",
    )
