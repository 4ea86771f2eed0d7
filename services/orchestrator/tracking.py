"""MLflow experiment tracking: each asiarch experiment of a run as one MLflow run.

Guarantees:
- One MLflow experiment per asiarch run, named after the run id; one MLflow run per finished asiarch
  experiment (succeeded or failed; pending ones are skipped), replicates included, found again by its
  tag `asiarch.id`. Logging the same experiment again never makes a second run: an unchanged one is
  skipped (tag `asiarch.digest`, a hash of the whole record), a changed one (a confirmation verdict
  added, say) is updated in place. The digest is written last, so a log cut short is finished by the next.
- What a run holds: params (name, parent(s), cycle, origin, budget preset, seed, rung, strategy,
  precision, device), metrics (val_loss, bits_per_byte, train_loss, each benchmark setting by its name,
  mqar_mean, tokens_per_second, parameters, fitness/*, confirmation/*, proxy/*, and the loss curve as the
  step series loss_curve/train and loss_curve/val), tags (asiarch.* lineage and outcome; the motivation
  as the run's description) and artifacts (layer.py: the source evaluated; analysis.md and analysis.json;
  spec.json for a DSL design). MLflow params cannot change: an update adds missing params only.
- Where: MLFLOW_TRACKING_URI when set, else `sqlite:///<cwd>/mlruns/mlflow.db` (MLflow 3's file store
  refuses to start, its local store is SQLite); with a SQLite store the artifacts go beside the database
  (`<db dir>/artifacts/<run id>/`), not into the directory MLflow happens to be started from.
- Failures of the tracker (bad URI, server down, unwritable store) are TrackingError, one line. An
  unreachable server is given up after MLFLOW_HTTP_REQUEST_MAX_RETRIES (2 unless set: seconds, not
  MLflow's default of minutes).
- `discover --track mlflow` (LiveTracking) logs on one worker thread as the loop records, so the loop
  only hands over a copy of the record; a failure there is a warning, tracking stops, the run goes on.
  `asiarch export-runs mlflow RUN_DIR` (export_command) logs a run's experiments read through its
  analyst, as the results commands read them.
- mlflow is imported only when tracking is used: `asiarch --help` and an untracked discover never load it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import structlog

from asiarch.common.contract import name_of, precisions, preset_name
from asiarch.orchestrator.config import DEFAULT_MLFLOW_STORE
from asiarch.orchestrator.results import summary
from asiarch.v1 import analyst_pb2, common_pb2

log = structlog.get_logger("asiarch.tracking")

ID_TAG = "asiarch.id"
DIGEST_TAG = "asiarch.digest"
# Bumped when what is logged for an experiment changes, so that export-runs re-logs every run.
MAPPING_VERSION = b"asiarch-mlflow-1"
TERMINAL = {common_pb2.EXPERIMENT_STATUS_SUCCEEDED, common_pb2.EXPERIMENT_STATUS_FAILED}
MAX_TAG = 5000  # characters; MLflow refuses tag values over 8000
MAX_BATCH = 1000  # entities per log_batch call, MLflow's limit
NOT_METRIC_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")


class TrackingError(Exception):
    """The tracker could not be opened or written: one line for the user."""


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else a SQLite store in ./mlruns (MLflow 3.18 refuses its old file store)."""
    local = (Path.cwd() / DEFAULT_MLFLOW_STORE).resolve()
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{local}"


def artifact_location(uri: str, run_id: str) -> str | None:
    """Beside the database for a SQLite store; None (the server's choice) for any other."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///")).resolve()
    return (database.parent / "artifacts" / run_id).as_uri()


@contextlib.contextmanager
def _said(uri: str) -> Iterator[None]:
    """MLflow's failures as TrackingError. Its stores raise MlflowException for most things, but a
    database or disk error can surface as SQLAlchemy's or the OS's own."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except UnsupportedModelRegistryStoreURIException:
        # MLflow names the model registry here, though the tracking URI is what it cannot use.
        raise TrackingError(
            f"MLflow cannot use the tracking URI {uri!r} (MLFLOW_TRACKING_URI): use sqlite:///PATH, "
            "http(s)://HOST:PORT of an MLflow server, or postgresql:// / mysql:// / mssql://"
        ) from None
    except (MlflowException, SQLAlchemyError, OSError) as exc:
        text = " ".join(str(exc).split())[:600]
        raise TrackingError(f"MLflow tracking at {uri}: {type(exc).__name__}: {text}") from None


# --- what an experiment becomes ---


def _millis(stamp: Any) -> int | None:
    return stamp.ToMilliseconds() if stamp.seconds or stamp.nanos else None


def run_params(e: common_pb2.Experiment, options: dict[str, Any]) -> dict[str, str]:
    """What the run was asked to do. Empty values (a baseline's parent) are left out."""
    budget = e.evaluation.budget
    precision = name_of(precisions(), budget.precision) or options.get("precision") or "preset default"
    values = {
        "name": e.name,
        "parent": e.parent_ids[0] if e.parent_ids else "",
        "parents": ",".join(e.parent_ids) if len(e.parent_ids) > 1 else "",
        "cycle": str(e.cycle),
        "origin": common_pb2.ProposalOrigin.Name(e.proposal.origin).removeprefix("PROPOSAL_ORIGIN_").lower(),
        "budget": preset_name(budget.preset) if budget.preset else str(options.get("budget") or ""),
        "seed": str(budget.seed) if e.HasField("evaluation") else str(options.get("seed", "")),
        "rung": str(budget.rung or 1),
        "strategy": str(options.get("strategy") or ""),
        "precision": str(precision),
        "device": e.evaluation.device or budget.device,
    }
    return {k: v[:6000] for k, v in values.items() if v}


def run_tags(e: common_pb2.Experiment) -> dict[str, str]:
    """Lineage and outcome; the motivation as the run's description (MLflow's note)."""
    status = common_pb2.ExperimentStatus.Name(e.status).removeprefix("EXPERIMENT_STATUS_").lower()
    tags = {
        ID_TAG: e.id,
        "asiarch.run_id": e.run_id,
        "asiarch.parent_ids": ",".join(e.parent_ids),
        "asiarch.is_baseline": str(e.is_baseline).lower(),
        "asiarch.reference_only": str(e.proposal.reference_only).lower(),
        "asiarch.replicate_of": e.replicate_of,
        "asiarch.status": status,
        "asiarch.generator": e.proposal.generator,
        "asiarch.failure_reason": e.evaluation.failure_reason,
        "asiarch.reused_from": e.evaluation.reused_from,
        "asiarch.repairs": str(len(e.evaluation.repairs)),
        "asiarch.promising": str(e.analysis.promising).lower(),
        "asiarch.breakthrough": str(e.analysis.breakthrough).lower(),
        "mlflow.note.content": e.proposal.motivation,
    }
    if e.confirmation.against_id:
        tags["asiarch.confirmation"] = "confirmed" if e.confirmation.confirmed else "not confirmed"
        tags["asiarch.confirmation_verdict"] = e.confirmation.verdict
        tags["asiarch.confirmed_against"] = e.confirmation.against_id
    return {k: v[:MAX_TAG] for k, v in tags.items() if v}


def scalar_metrics(e: common_pb2.Experiment) -> dict[str, float]:
    """Every number measured or scored, by MLflow metric name (absent when not measured)."""
    m = e.evaluation.metrics
    values: dict[str, float] = {
        name: float(getattr(m, name))
        for name in ("val_loss", "bits_per_byte", "train_loss", "tokens_per_second", "parameters")
        if m.HasField(name)
    }
    if m.HasField("layer_parameters"):
        values["layer_parameters"] = float(m.layer_parameters)
    values.update({NOT_METRIC_CHARS.sub("_", b.name): b.score for b in m.benchmarks})
    if (mqar := summary.mean_mqar(e)) is not None:
        values["mqar_mean"] = mqar
    values.update({f"proxy/{NOT_METRIC_CHARS.sub('_', k)}": v for k, v in m.proxies.items()})
    if e.evaluation.wall_seconds:
        values["wall_seconds"] = e.evaluation.wall_seconds
    if e.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED:  # a failure has no fitness
        f = e.fitness
        for part in ("total", "loss_score", "benchmark_score", "judge_score", "novelty"):
            values[f"fitness/{part}"] = getattr(f, part)
    if e.confirmation.against_id:
        c = e.confirmation
        for part in ("val_loss_mean", "against_val_loss_mean", "improvement_mean", "improvement_lower_95"):
            values[f"confirmation/{part}"] = getattr(c, part)
        values["confirmation/p_value"] = c.p_value
    return {k: v for k, v in values.items() if math.isfinite(v)}


def curve_metrics(e: common_pb2.Experiment, started_ms: int) -> list[Any]:
    """The loss curve as step series: loss_curve/train at every point, loss_curve/val where measured."""
    from mlflow.entities import Metric

    points: list[Metric] = []
    for p in e.evaluation.metrics.loss_curve:
        at = started_ms + int(p.elapsed_seconds * 1000)
        points.append(Metric("loss_curve/train", p.train_loss, at, p.step))
        if p.HasField("val_loss"):
            points.append(Metric("loss_curve/val", p.val_loss, at, p.step))
    return [p for p in points if math.isfinite(p.value)]


def analysis_markdown(e: common_pb2.Experiment) -> str:
    from asiarch.orchestrator.results.tables import ANALYSIS_PARTS

    a = e.analysis
    parts = [f"# {e.name} ({e.id})", "", f"## Motivation\n\n{e.proposal.motivation}"]
    parts += [f"## {title}\n\n{getattr(a, name)}" for name, title in ANALYSIS_PARTS if getattr(a, name)]
    if a.breakthrough_reason:
        parts.append(f"## Breakthrough\n\n{a.breakthrough_reason}")
    if e.confirmation.verdict:
        parts.append(f"## Confirmation\n\n{e.confirmation.verdict}")
    parts.append(f"\n_written by {a.written_by or 'unknown'}_")
    return "\n\n".join(parts) + "\n"


def artifact_files(e: common_pb2.Experiment) -> dict[str, str]:
    """File name -> text: the layer evaluated, the analysis (markdown and JSON), the DSL spec if any."""
    from google.protobuf import json_format

    files = {"layer.py": summary.layer_source(e).module_source}
    if e.HasField("analysis"):
        files["analysis.md"] = analysis_markdown(e)
        files["analysis.json"] = json_format.MessageToJson(e.analysis, preserving_proto_field_name=True)
    if e.proposal.spec_json:
        files["spec.json"] = json.dumps(json.loads(e.proposal.spec_json), indent=2)
    return {name: text for name, text in files.items() if text}


def digest(e: common_pb2.Experiment) -> str:
    return hashlib.sha256(MAPPING_VERSION + e.SerializeToString(deterministic=True)).hexdigest()


# --- the store ---


@dataclass
class Logged:
    """What the store holds for one asiarch experiment (enough to decide what an update must add)."""

    run_id: str
    digest: str
    params: set[str] = field(default_factory=set)
    metrics: dict[str, float] = field(default_factory=dict)


class MlflowTracker:
    """One asiarch run's experiment in an MLflow store; `log` is idempotent. Not thread-safe: one caller."""

    def __init__(self, run_id: str, options: dict[str, Any], uri: str | None = None) -> None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # a dead server: seconds, not minutes
        from mlflow.tracking import MlflowClient

        self.uri, self.run_id, self.options = uri or tracking_uri(), run_id, options
        with _said(self.uri):
            self.client = MlflowClient(tracking_uri=self.uri)
            self.experiment_id = self._experiment()
            self.logged = self._existing()

    def _experiment(self) -> str:
        found = self.client.get_experiment_by_name(self.run_id)
        if found is None:
            return self.client.create_experiment(
                self.run_id,
                artifact_location=artifact_location(self.uri, self.run_id),
                tags={"asiarch.run_id": self.run_id},
            )
        if found.lifecycle_stage == "deleted":  # deleted in the UI: logging the run again brings it back
            self.client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)

    def _existing(self) -> dict[str, Logged]:
        logged: dict[str, Logged] = {}
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], max_results=1000, page_token=token)
            for run in page:
                key = run.data.tags.get(ID_TAG)
                if key and key not in logged:
                    tag = run.data.tags.get(DIGEST_TAG, "")
                    logged[key] = Logged(run.info.run_id, tag, set(run.data.params), dict(run.data.metrics))
            token = page.token
            if not token:
                return logged

    def log(self, e: common_pb2.Experiment) -> str:
        """Log one experiment: "logged" (a new MLflow run), "updated", "unchanged" or "skipped" (not
        finished). Raises TrackingError."""
        if e.status not in TERMINAL:
            return "skipped"
        mark = digest(e)
        known = self.logged.get(e.id)
        if known is not None and known.digest == mark:
            return "unchanged"
        outcome = "logged" if known is None else "updated"
        with _said(self.uri):
            started = _millis(e.evaluation.started_at) or _millis(e.created_at) or int(time.time() * 1000)
            if known is None:
                # Tagged with the asiarch id at birth: a log cut short is found and finished next time.
                run = self.client.create_run(
                    self.experiment_id, start_time=started, tags={ID_TAG: e.id}, run_name=e.name
                )
                known = self.logged[e.id] = Logged(run.info.run_id, "")
            self._write(e, known, started, mark)
        return outcome

    def _write(self, e: common_pb2.Experiment, known: Logged, started: int, mark: str) -> None:
        from mlflow.entities import Metric, Param, RunTag

        ended = _millis(e.evaluation.finished_at) or _millis(e.updated_at) or int(time.time() * 1000)
        params = [Param(k, v) for k, v in run_params(e, self.options).items() if k not in known.params]
        scalars = {k: v for k, v in scalar_metrics(e).items() if known.metrics.get(k) != v}
        metrics = [Metric(k, v, ended, 0) for k, v in scalars.items()]
        metrics += [m for m in curve_metrics(e, started) if m.key not in known.metrics]
        if params:  # fewer than MLflow's 100 params per batch
            self.client.log_batch(known.run_id, params=params)
        for i in range(0, len(metrics), MAX_BATCH):
            self.client.log_batch(known.run_id, metrics=metrics[i : i + MAX_BATCH])
        with tempfile.TemporaryDirectory(prefix="asiarch-mlflow-") as folder:
            for name, text in artifact_files(e).items():
                (Path(folder) / name).write_text(text, encoding="utf-8")
            self.client.log_artifacts(known.run_id, folder)
        status = "FINISHED" if e.status == common_pb2.EXPERIMENT_STATUS_SUCCEEDED else "FAILED"
        self.client.set_terminated(known.run_id, status, end_time=ended)
        # Last, the digest with the tags: it says the run is complete (a log cut short is redone).
        tags = [RunTag(k, v) for k, v in {**run_tags(e), DIGEST_TAG: mark}.items()]
        self.client.log_batch(known.run_id, tags=tags)  # fewer than MLflow's 100 tags per batch
        known.digest = mark
        known.params |= {p.key for p in params}
        known.metrics.update({m.key: m.value for m in metrics})


# --- discover --track mlflow ---


class LiveTracking:
    """Logs each experiment as discover records it, on one worker thread (the loop hands over a copy and
    goes on). The first failure is a warning and ends the tracking; the run goes on."""

    def __init__(
        self, run_id: str, options: dict[str, Any], analyst: Any, note: Callable[[str], None], confirm: bool
    ) -> None:
        self.run_id, self.options, self.analyst = run_id, options, analyst
        self.note, self.confirm = note, confirm
        self.loop = asyncio.get_running_loop()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow")
        self.tracker: MlflowTracker | None = None
        self.failure = ""
        self.outcomes: Counter[str] = Counter()
        self.seconds = 0.0  # spent logging, on the worker thread
        self.ids: set[str] = set()  # the experiments logged
        self.awaiting: set[str] = set()  # promising, to be confirmed: logged again with the verdict
        self.pool.submit(self._guarded, self._open)  # the store is created while the baselines train

    def _open(self) -> None:
        self.tracker = MlflowTracker(self.run_id, self.options)

    def _log(self, experiment: common_pb2.Experiment) -> None:
        if self.tracker is not None:
            started = time.perf_counter()
            self.outcomes[self.tracker.log(experiment)] += 1
            self.seconds += time.perf_counter() - started
            self.ids.add(experiment.id)

    def _guarded(self, work: Callable[[], None]) -> None:
        if self.failure:
            return
        try:
            work()
        except Exception as exc:  # a tracker's failure, or a bug in it, must not end a discovery run
            self.failure = str(exc) if isinstance(exc, TrackingError) else f"{type(exc).__name__}: {exc}"
            log.warning("tracking_failed", error=self.failure, exc_info=not isinstance(exc, TrackingError))
            self.loop.call_soon_threadsafe(
                self.note,
                f"warning: MLflow tracking stopped, the run goes on: {self.failure}; log the run later with "
                "`asiarch export-runs mlflow RUN_DIR`",
            )

    def finished(self, experiment: common_pb2.Experiment) -> None:
        copy = common_pb2.Experiment()
        copy.CopyFrom(experiment)  # the loop may go on using its own
        if self.confirm and copy.analysis.promising and not copy.confirmation.against_id:
            self.awaiting.add(copy.id)
        self.pool.submit(self._guarded, lambda: self._log(copy))

    async def confirmations(self) -> None:
        """Log again, with their verdicts, the promising experiments confirmed since they were recorded
        (the loop confirms within the cycle; one GetExperiment each)."""
        if self.failure:
            return
        for experiment_id in sorted(self.awaiting):
            try:
                reply = await self.analyst.GetExperiment(
                    analyst_pb2.GetExperimentRequest(id=experiment_id), timeout=60
                )
            except grpc.aio.AioRpcError as exc:  # asked again after the next cycle
                log.info("tracking_confirmation_unread", id=experiment_id, error=str(exc))
                continue
            if reply.confirmation.against_id:
                self.awaiting.discard(experiment_id)
                self.finished(reply)

    def after_cycle(
        self, inner: Callable[[int, dict[str, int]], Awaitable[None]]
    ) -> Callable[[int, dict[str, int]], Awaitable[None]]:
        async def on_cycle(cycle: int, proposed: dict[str, int]) -> None:
            await inner(cycle, proposed)
            await self.confirmations()

        return on_cycle

    def display(self, display: Any) -> Any:
        return TrackedDisplay(display, self)

    def abandon(self) -> None:
        """The run stopped or failed: what is queued is dropped (export-runs logs it later)."""
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> str:
        """Wait for what is queued; one line saying what was logged, and where."""
        await asyncio.wrap_future(self.pool.submit(lambda: None))
        self.pool.shutdown()
        if self.failure:
            return f"MLflow tracking stopped: {self.failure}"
        writes = sum(self.outcomes.values())
        where = self.tracker.uri if self.tracker is not None else tracking_uri()
        each = f"{writes} writes, {1000 * self.seconds / max(writes, 1):.0f} ms each, in the background"
        return f"MLflow: {len(self.ids)} experiment(s) of run {self.run_id!r} logged at {where} ({each})"


class TrackedDisplay:
    """A discover Display that also hands every finished experiment to the tracking."""

    def __init__(self, display: Any, tracking: LiveTracking) -> None:
        self._display, self._tracking = display, tracking

    def __getattr__(self, name: str) -> Any:
        return getattr(self._display, name)

    def __enter__(self) -> TrackedDisplay:
        self._display.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._display.__exit__(*exc)

    def finished(self, key: str, experiment: common_pb2.Experiment) -> None:
        self._display.finished(key, experiment)
        self._tracking.finished(experiment)


class NoTracking:
    """discover without --track: the display and the cycle callback as they are."""

    def display(self, display: Any) -> Any:
        return display

    def after_cycle(
        self, inner: Callable[[int, dict[str, int]], Awaitable[None]]
    ) -> Callable[[int, dict[str, int]], Awaitable[None]]:
        return inner


@contextlib.asynccontextmanager
async def live_tracking(
    track: str | None, metadata: dict[str, Any], stubs: Any, display: Any, options: Any
) -> AsyncIterator[LiveTracking | NoTracking]:
    """The tracking of a discover run (`--track`; run.json's metadata, the loop's Stubs, Display and
    Options), closed (what is queued logged) when the block ends."""
    if track is None:
        yield NoTracking()
        return
    confirm = options.confirm_seeds > 0
    tracking = LiveTracking(
        metadata["run_id"], metadata.get("options", {}), stubs.analyst, display.note, confirm
    )
    try:
        yield tracking
    except BaseException:  # stopped or failed: no waiting on the tracker on the way out
        tracking.abandon()
        display.note(
            "MLflow tracking stopped with the run; `asiarch export-runs mlflow RUN_DIR` logs the rest"
        )
        raise
    display.note(await tracking.close())


# --- asiarch export-runs mlflow RUN_DIR ---


async def export_command(args: argparse.Namespace) -> int:
    """Log every experiment of a run (replicates included) read through its analyst; one line saying
    what was logged, updated and left as it was."""
    from asiarch.common.errors import ServiceError
    from asiarch.orchestrator.results.fetch import ResultsError, load_run, resolve_run_dir
    from asiarch.orchestrator.results.progress import spinner

    try:
        data = await load_run(resolve_run_dir(args.run_dir), args.analyst, include_replicates=True)
        with spinner(f"logging {len(data.experiments)} experiments to MLflow…") as say:
            options = data.info.metadata.get("options", {})
            tracker = await asyncio.to_thread(MlflowTracker, data.info.run_id, options)
            outcomes: Counter[str] = Counter()
            for i, experiment in enumerate(data.experiments, 1):
                say(f"logging {i}/{len(data.experiments)} to MLflow: {experiment.name}…")
                outcomes[await asyncio.to_thread(tracker.log, experiment)] += 1
    except (TrackingError, ResultsError, ServiceError) as exc:
        print(f"asiarch export-runs: {exc}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{outcomes[k]} {k}" for k in ("logged", "updated", "unchanged", "skipped"))
    print(
        f"run {data.info.run_id}: {counts} (skipped: not finished) in MLflow experiment "
        f"{data.info.run_id!r} (id {tracker.experiment_id}) at {tracker.uri}"
    )
    return 0
