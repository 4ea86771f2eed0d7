"""Services `discover` starts itself: subprocesses on 127.0.0.1, supervised.

A local service that dies mid-run (a crash, the OOM killer, a test killing it)
is started again on the same port, so the channels the loop holds reconnect
and its retries succeed; the run goes on. Each service logs to
`RUN_DIR/logs/<name>.log`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from asiarch.common.errors import Unavailable
from asiarch.common.local import spawn_service, stop_process

log = structlog.get_logger("asiarch.discover")
MAX_RESTARTS = 5


class SupervisedService:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name, self.env, self.log_dir = name, env, log_dir
        self.port = 0
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = False
        self._watcher: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _spawn(self) -> None:
        # The first start takes a free port; a restart reuses it, so the loop's channels reconnect.
        self.process, self.port = await spawn_service(
            self.name,
            port=self.port,
            log_path=self.log_dir / f"{self.name}.log",
            env=self.env,
            port_file=self.log_dir / f".{self.name}.port",
        )

    async def start(self) -> None:
        await self._spawn()
        self._watcher = asyncio.create_task(self._watch(), name=f"watch-{self.name}")

    async def _watch(self) -> None:
        while not self._stopping:
            assert self.process is not None
            code = await self.process.wait()
            if self._stopping:
                return
            if self.restarts >= MAX_RESTARTS:
                log.error("local service keeps dying; not restarting", service=self.name, exit_code=code)
                return
            self.restarts += 1
            log.warning(
                "local service exited; restarting on the same port",
                service=self.name,
                exit_code=code,
                restart=self.restarts,
            )
            await asyncio.sleep(min(10.0, 0.5 * 2**self.restarts))
            try:
                await self._spawn()
            except Unavailable as exc:
                log.error("restart failed", service=self.name, error=exc.message)
                return

    async def stop(self) -> None:
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
        if self.process is not None:
            await stop_process(self.process)
