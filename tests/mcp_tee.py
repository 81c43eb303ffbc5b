"""A transparent stdio relay that records every line: `python mcp_tee.py RECORD -- COMMAND...`.

An MCP client spawns this in place of the server; it runs COMMAND, copies its
own stdin to the command's and the command's stdout to its own, line by line,
and appends each line to RECORD as `<` (client to server) or `>` (server to
client) and the line. End of input is passed on; SIGTERM too. It exits with
the command's status once the command's stdout has ended, so the record is
whole by then. Tests read RECORD with mcp_wire_check.WireLog.
"""

import signal
import subprocess
import sys
import threading
from typing import IO


def main() -> int:
    """Relay until the command's stdout ends."""
    record_path, separator, *command = sys.argv[1:]
    assert separator == "--" and command, __doc__
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    signal.signal(signal.SIGTERM, lambda signum, frame: child.terminate())
    lock = threading.Lock()
    with open(record_path, "a", encoding="utf-8") as record:

        def note(direction: str, line: bytes) -> None:
            with lock:
                record.write(direction + " " + line.decode("utf-8").rstrip("\n") + "\n")
                record.flush()

        def copy(source: IO[bytes], target: IO[bytes], direction: str) -> None:
            for line in iter(source.readline, b""):
                note(direction, line)
                try:
                    target.write(line)
                    target.flush()
                except (BrokenPipeError, ValueError):
                    break
            target.close()

        inbound = threading.Thread(
            target=copy, args=(sys.stdin.buffer, child.stdin, "<"), daemon=True
        )
        inbound.start()
        copy(child.stdout, sys.stdout.buffer, ">")
        return child.wait()


if __name__ == "__main__":
    sys.exit(main())
