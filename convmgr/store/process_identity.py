"""Process identity, for lease liveness: pid, start time and boot id, from /proc.

A lease row records who wrote it; these tell whether that process may still run.
"""

import os
from typing import Final


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read()
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a process, from /proc."""
    text = _read_text(f"/proc/{pid}/stat")
    if text is None:
        return None
    # The command name (field 2) may contain spaces and ')': split after its last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _boot_id() -> str | None:
    text = _read_text("/proc/sys/kernel/random/boot_id")
    return text.strip() if text else None


def _process_alive(pid: int, start: int | None, boot_id: str | None) -> bool:
    """Whether the process that wrote a lease row may still be running."""
    if boot_id is not None and _BOOT_ID is not None and boot_id != _BOOT_ID:
        return False  # written before a reboot
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    except OSError:
        return True  # cannot tell: keep the lease rather than steal a live one
    info = _proc_stat(pid)
    if info is None:
        return True  # no /proc (not Linux): the pid check is all we have
    state, started = info
    if state in ("Z", "X"):
        return False  # killed and not yet reaped by its parent
    # A different start time means the pid was reused by an unrelated process.
    return start is None or started == start


_BOOT_ID: Final = _boot_id()
