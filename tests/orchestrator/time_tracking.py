"""What MLflow tracking costs per experiment (README, "Experiment tracking"): MlflowTracker.log over the
results tests' recorded run (12 experiments: a 10-point loss curve, 2 MQAR settings, the layer source, a
~2.5 KB analysis), five times under new ids, into a fresh SQLite store; wall and CPU (this thread) per
experiment, then the same again (unchanged: skipped). Not a test (no timed tests): run it by hand,

    nice -n 19 .venv/bin/python -P tests/orchestrator/time_tracking.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]

import results_data  # noqa: E402

from asiarch.orchestrator.results.tables import ANALYSIS_PARTS  # noqa: E402
from asiarch.orchestrator.tracking import MlflowTracker  # noqa: E402
from asiarch.v1 import common_pb2  # noqa: E402

COPIES = 5


def analysed(e: common_pb2.Experiment, copy: int) -> common_pb2.Experiment:
    """`e` under a new id, with an analysis and a fitness as the analyst would add them."""
    made = common_pb2.Experiment()
    made.CopyFrom(e)
    made.id = f"{e.id}.{copy}"
    for part, _ in ANALYSIS_PARTS:
        setattr(made.analysis, part, "A sentence of analysis with numbers 1.234 and 0.567. " * 10)
    made.fitness.total = 0.5
    return made


def main() -> None:
    base = [e for e in results_data.run_experiments() if e.run_id == results_data.RUN_ID]
    experiments = [analysed(e, i) for i in range(COPIES) for e in base]
    with tempfile.TemporaryDirectory() as folder:
        wall, cpu = time.perf_counter(), time.thread_time()
        tracker = MlflowTracker("timing", {"strategy": "asi-arch"}, uri=f"sqlite:///{folder}/mlflow.db")
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        print(f"open (creates the store): {wall:.2f} s wall, {cpu:.2f} s CPU")
        for label in ("first log", "again (unchanged)"):
            walls, cpus = [], []
            for e in experiments:
                wall, cpu = time.perf_counter(), time.thread_time()
                tracker.log(e)
                walls.append(1000 * (time.perf_counter() - wall))
                cpus.append(1000 * (time.thread_time() - cpu))
            median, mean = statistics.median, statistics.mean
            print(
                f"{label}: {len(experiments)} experiments, each: median {median(walls):.1f} ms wall, "
                f"{median(cpus):.1f} ms CPU (mean {mean(walls):.1f} / {mean(cpus):.1f})"
            )


if __name__ == "__main__":
    main()
