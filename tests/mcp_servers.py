"""The MCP servers the hub's tests run, and a log handler that waits for a server's stderr lines."""

import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from convmgr.model import McpServerSettings

ROOT = Path(__file__).resolve().parent.parent
DOUBLE = Path(__file__).resolve().parent / "mcp_double.py"
# Installed by .ci/run (npm ci --prefix .ci/node), never fetched by a test.
FILESYSTEM_BIN = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "mcp-server-filesystem"


def time_server(name: str = "time", **options: Any) -> McpServerSettings:
    """mcp-server-time from PyPI (the test extra), run by this interpreter."""
    return McpServerSettings(name, sys.executable, ("-m", "mcp_server_time"), **options)


def filesystem_server(root: Path, name: str = "files", **options: Any) -> McpServerSettings:
    """@modelcontextprotocol/server-filesystem from npm, allowed into `root` only."""
    if not FILESYSTEM_BIN.exists():
        if shutil.which("npm") is None and not os.environ.get("CI"):
            pytest.skip("npm is not installed here, so .ci/node holds no filesystem MCP server")
        pytest.fail(
            f"{FILESYSTEM_BIN} is missing: run `npm ci --prefix .ci/node` (as .ci/run does)"
        )
    return McpServerSettings(name, str(FILESYSTEM_BIN), (str(root),), **options)


def double_server(name: str = "double", *flags: str, **options: Any) -> McpServerSettings:
    """tests/mcp_double.py, the server for faults a real one will not show on demand."""
    return McpServerSettings(name, sys.executable, (str(DOUBLE), *flags), **options)


class ServerLog(logging.Handler):
    """The lines convmgr logs from its MCP servers' stderr; waits for one without polling."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self._waiting: list[tuple[str, anyio.Event]] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        self.lines.append(line)
        for text, event in self._waiting:
            if text in line:
                event.set()

    def seen(self, text: str) -> bool:
        """Whether a logged line holds this text."""
        return any(text in line for line in self.lines)

    async def wait_for(self, text: str, timeout: float = 20) -> str:
        """The first logged line holding this text, once there is one."""
        if not self.seen(text):
            event = anyio.Event()
            self._waiting.append((text, event))
            with anyio.fail_after(timeout):
                await event.wait()
        return next(line for line in self.lines if text in line)

    async def pid(self, server: str) -> int:
        """The pid the test double announced (`pid N`) as this server's."""
        line = await self.wait_for(f"MCP server {server}: pid ")
        return int(line.rsplit(" ", 1)[1])


def collect_server_log() -> Iterator[ServerLog]:
    """Collect the MCP servers' stderr lines that convmgr logs (the body of a fixture)."""
    logger = logging.getLogger("convmgr.tools.mcp")
    handler = ServerLog()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def gone(pid: int) -> bool:
    """Whether no process has this pid any more (it was reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
