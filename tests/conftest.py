from __future__ import annotations

import os
import shutil
import sys

# Triton decides between compiling and interpreting when a kernel is defined,
# i.e. when its module is imported, so this must happen before any test
# imports triton. Without a GPU the Triton kernels run in the interpreter.
if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("TRITON_INTERPRET", "1")

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from llm_fake_server import FakeLLMServer
from support import RunningService, start_service

# `python -m pytest` from the repository root puts the root on sys.path, where our top-level
# kernels/ folder would shadow Hugging Face's `kernels` (which transformers imports). `make test`
# passes -P; this keeps a plain `python -m pytest` from the root working too.
_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _ROOT]


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[Callable[..., RunningService]]:
    """Start services as subprocesses; every one still running is stopped at teardown."""
    started: list[RunningService] = []

    def start(name: str, **kwargs: object) -> RunningService:
        service = start_service(name, tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(service)
        return service

    yield start
    for service in started:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait()


@pytest.fixture(scope="module")
def fake_tgi() -> Iterator[FakeLLMServer]:
    """A local server speaking TGI's protocol (and the OpenAI one), with generous token limits."""
    with FakeLLMServer() as server:
        server.state.info.update(max_input_tokens=60_000, max_total_tokens=64_000)
        yield server
