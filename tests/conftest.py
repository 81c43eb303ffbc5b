"""Shared fixtures."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Run anyio tests on asyncio, the backend convmgr serves on."""
    return "asyncio"
