"""Shared fixtures."""

from collections.abc import AsyncIterator

import pytest
from hypothesis import settings
from store_kinds import STORE_KINDS, new_store

from convmgr.store.base import ConversationStore

# No per-example deadline: under CPU load a slow example is not a failure.
settings.register_profile("convmgr", deadline=None)
settings.load_profile("convmgr")


@pytest.fixture
def anyio_backend() -> str:
    """Run anyio tests on asyncio, the backend convmgr serves on."""
    return "asyncio"


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[ConversationStore]:
    """An open store of each kind: every store contract test runs against all of them."""
    pg_url = None
    if request.param == "postgresql":
        pg_url = request.getfixturevalue("pg_server").new_database()
    impl = new_store(request.param, tmp_path, pg_url)
    await impl.open()
    yield impl
    await impl.close()


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server of this test session's own (tests/pg_server.py).

    Skipped when no PostgreSQL binaries are installed, except under CI (CI=true),
    where that is a failure: .ci/run installs them.
    """
    import os

    from pg_server import bin_dir, pg_server

    if bin_dir() is None:
        reason = "PostgreSQL is not installed (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)
    with pg_server() as server:
        yield server


@pytest.fixture
def spawn(tmp_path):
    """Start `python -m convmgr ARGS...` with piped stdio; every server is killed at teardown.

    `spawn(*args, framing="ndjson", env=None, start_reading=True)` returns a
    client.Client (tests/client.py). No user configuration or store leaks in: the
    environment points every config/data directory into tmp_path.
    """
    from client import Client, server_env

    clients = []

    def start(*args, framing="ndjson", env=None, start_reading=True, validate=True):
        client = Client(
            [str(a) for a in args],
            framing=framing,
            env=server_env(tmp_path, env),
            start_reading=start_reading,
            validate=validate,
        )
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.kill()


@pytest.fixture
def fake_openai_url():
    """The base URL of `python tests/fake_openai.py` in a process of its own (killed at teardown).

    It follows fake_openai.scenario_handler: the model name is the script
    (`status:500`, `silent`, anything else echoes the input).
    """
    import subprocess
    import sys
    from pathlib import Path

    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("fake_openai.py"))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), f"the fake server did not start: {url!r}"
        yield url
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
