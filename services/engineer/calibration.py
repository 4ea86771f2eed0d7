"""Step-time calibration: how much slower this machine is, when the engineer starts, than the one the
presets' wall-clock limits were sized on.

The engineer times a fixed small training workload (forward and backward of a two-layer MLP on a
batch the size of the cpu preset's, with the sandbox's thread count) in a child Python, and scales
every preset's wall-clock limit by max(1, measured / REFERENCE_SECONDS), at most MAX_FACTOR. A busy
or slow machine then gets proportionally more time, so it does not fail a baseline on a limit sized
for an idle one; a faster machine keeps the preset's limit. A request that sets wall_clock_seconds
itself is never scaled: the caller asked for that number.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
from dataclasses import dataclass

import structlog

from asiarch.common.local import python_command

log = structlog.get_logger("asiarch.engineer.calibration")

# Median seconds of WORKLOAD on the machine the presets were sized on (2 cores, idle, 2 threads; 0.087 s
# measured at an engineer start, 2026-12-04; `python -P -m asiarch.engineer.calibration`). With another
# 2-thread torch job beside it the workload took 0.57-0.60 s (x6.5); a deltanet cpu evaluation took 283 s
# instead of 44 s while tests ran beside it (x6.4): contention slows both alike, which makes the workload
# a yardstick for the limits.
REFERENCE_SECONDS = 0.09
MAX_FACTOR = 8.0
TIMEOUT_SECONDS = 120.0
WORKLOAD = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 64))
x = torch.randn(8 * 128, 64)
for _ in range(3):
    model(x).square().mean().backward()
times = []
for _ in range(5):
    started = time.perf_counter()
    for _ in range(40):
        model(x).square().mean().backward()
    times.append(time.perf_counter() - started)
print(" ".join(f"{t:.6f}" for t in times))
"""


@dataclass(frozen=True)
class Calibration:
    seconds: float  # median of the timed repeats; 0 when the measurement failed
    factor: float  # what preset wall-clock limits are multiplied by, >= 1

    def describe(self) -> str:
        if not self.seconds:
            return "not measured (the calibration failed): preset limits as sized"
        return (
            f"workload {self.seconds:.3f} s vs {REFERENCE_SECONDS:.3f} s reference: limits x{self.factor:.2f}"
        )


def factor_for(seconds: float) -> float:
    return min(MAX_FACTOR, max(1.0, seconds / REFERENCE_SECONDS)) if seconds > 0 else 1.0


def measure(threads: int) -> float:
    """Median seconds of the workload in a child Python (the service itself never imports torch)."""
    result = subprocess.run(
        [*python_command(), "-c", WORKLOAD, str(threads)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        env={**os.environ, "OMP_NUM_THREADS": str(threads)},
        check=True,
    )
    return statistics.median(float(t) for t in result.stdout.split())


async def calibrate(threads: int) -> Calibration:
    try:
        seconds = await asyncio.to_thread(measure, threads)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        log.warning("step-time calibration failed; preset limits are used as sized", error=str(exc)[:300])
        return Calibration(0.0, 1.0)
    calibration = Calibration(seconds, factor_for(seconds))
    log.info("step-time calibration", result=calibration.describe())
    return calibration


if __name__ == "__main__":
    print(f"{measure(2):.4f}")
