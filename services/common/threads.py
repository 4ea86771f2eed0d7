"""How many threads torch, OpenMP and the BLAS libraries may use in a service process: one setting, one call.

Services share the CPU with each other and with the engineer's training sandboxes. OpenMP's
workers spin at every barrier, so a library running one thread per core slows to a crawl once
another process holds a core: issue 16 saw the analyst's Record fall from 11.3/s to 0.8/s beside
one busy process, and recover to 11.8/s with OMP_NUM_THREADS=1. The services' own work is small
operations (one embedding, one small matrix), where a second thread gains little even on an idle
machine, so the default is 1; `ASIARCH_THREADS` raises it (e.g. a researcher running a local LLM
on a machine of its own).

`bound_threads()`, called by `asiarch serve` before the service's modules load, applies it to:
- the variables OpenMP, MKL, OpenBLAS, BLIS, Accelerate and numexpr read when they load. torch
  sizes its intra-op pool from OMP_NUM_THREADS / MKL_NUM_THREADS (at most one per core) when it
  is first imported, which in the analyst, researcher and engineer happens after start-up (worker
  threads get the same size);
- torch's intra-op and inter-op pools directly, when torch is already imported.
Called before the service's modules are imported, it reaches numpy's OpenBLAS too (sized when it
loads). What it cannot reach: torch's inter-op pool when torch is imported later (no variable
sizes it; only torch.jit.fork uses it, which no service does).
Child processes inherit the variables. The engineer's sandboxes do not: they get a scrubbed
environment with their own counts (ASIARCH_ENGINEER_SANDBOX_THREADS).
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

import structlog
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from asiarch.common.config import ENV_PREFIX, load_settings

# What each threading runtime reads when it loads.
LIBRARY_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

log = structlog.get_logger("asiarch.threads")


class ThreadSettings(BaseSettings):
    """The thread bound every service applies at start."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    threads: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Threads torch, OpenMP and BLAS may use in this service's process.",
    )


@dataclass(frozen=True)
class ThreadBound:
    """What `bound_threads` set, for the service's log once logging is configured."""

    threads: int
    replaced: dict[str, str]
    pools: dict[str, int]
    torch_loaded: bool

    def log(self) -> None:
        log.info(
            "threads bounded",
            threads=self.threads,
            torch_loaded=self.torch_loaded,
            replaced=self.replaced or None,
            **self.pools,
        )


def bound_threads(settings: ThreadSettings | None = None) -> ThreadBound:
    """Bound this process's torch/OpenMP/BLAS threads to ASIARCH_THREADS.

    Raises ConfigError (naming ASIARCH_THREADS) for a value that is not a whole number >= 1.
    """
    threads = (settings or load_settings(ThreadSettings)).threads
    value = str(threads)
    replaced = {name: os.environ[name] for name in LIBRARY_VARIABLES if os.environ.get(name, value) != value}
    for name in LIBRARY_VARIABLES:
        os.environ[name] = value
    torch = sys.modules.get("torch")
    pools: dict[str, int] = {}
    if torch is not None:
        torch.set_num_threads(threads)
        # The inter-op pool can be sized once, before its first use; later it keeps its size.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(threads)
        pools = {"torch_intra_op": torch.get_num_threads(), "torch_inter_op": torch.get_num_interop_threads()}
    return ThreadBound(threads, replaced, pools, torch is not None)
