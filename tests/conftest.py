from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import RunningService, start_service


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
