"""A throwaway PostgreSQL server for tests and benchmarks: initdb + pg_ctl in a temp dir.

Debian's `postgresql` package puts the binaries under
/usr/lib/postgresql/<version>/bin. initdb refuses to run as root, and CI runs
as root: the server then runs as the `postgres` user (runuser), in a directory
that user owns.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def bin_dir() -> Path | None:
    """The newest PostgreSQL server's bin directory, or None when none is installed."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return None if initdb is None else Path(initdb).resolve().parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgServer:
    """A running server: its data directory, port and how to run its tools."""

    bindir: Path
    root: Path
    port: int
    as_user: str | None

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        """A URL for the trust-authenticated superuser `convmgr`."""
        return f"postgresql://convmgr@127.0.0.1:{self.port}/{database}"

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one of the server's programs, as the server's user."""
        command = [str(self.bindir / tool), *args]
        if self.as_user is not None:
            command = ["runuser", "-u", self.as_user, "--", *command]
        return subprocess.run(
            command, check=check, capture_output=True, text=True, cwd=self.root, timeout=120
        )

    def pg_ctl(self, action: str) -> None:
        """pg_ctl start / stop / restart, waiting until it is done."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        args = ["-D", str(self.data), "-w", "-t", "60", "-m", "fast", "-o", options]
        args += ["-l", str(self.root / "server.log")]
        self.run("pg_ctl", action, *args)

    def new_database(self) -> str:
        """A fresh empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def pg_server() -> Iterator[PgServer]:
    """Start a server on a free local port; stopped and deleted at exit."""
    bindir = bin_dir()
    if bindir is None:
        raise FileNotFoundError("no PostgreSQL server binaries (initdb) installed")
    as_user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="convmgr-pg-", dir="/tmp"))
    if as_user is not None:
        shutil.chown(root, as_user)
    server = PgServer(bindir, root, _free_port(), as_user)
    try:
        server.run(
            "initdb", "-D", str(server.data), "-U", "convmgr", "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        server.pg_ctl("start")
        try:
            yield server
        finally:
            server.run("pg_ctl", "-D", str(server.data), "-m", "immediate", "stop", check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)
