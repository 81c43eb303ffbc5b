"""Turn throughput of the real server with the SQLite store vs `--no-store` (not a test).

Usage: python bench/bench_store_server.py [--conversations N] [--turns N] [--words N]
       [--rounds N] [--dir DIR]

Drives `python -m convmgr` over pipes: N conversations, each running short echo
turns in lock-step (the next turn is sent when the previous turnComplete is
read), all conversations at once. Every turn commits its two items to the
store before its turnComplete is written. Target (issue 3): throughput with the
store >= 0.8x that of `--no-store`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


class Server:
    """A `convmgr` child with ndjson pipes, read and written from this thread."""

    def __init__(self, args: list[str], home: Path) -> None:
        env = dict(os.environ)
        env.pop("CONVMGR_CONFIG", None)
        env["CONVMGR_HOME"] = str(home / "home")
        env["XDG_CONFIG_HOME"] = str(home / "config")
        env["XDG_DATA_HOME"] = str(home / "data")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "convmgr", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout
        self._next_id = 0

    def send(self, method: str, params: dict[str, Any]) -> int:
        """Write one request; its id."""
        self._next_id += 1
        line = json.dumps(
            {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}
        )
        data = (line + "\n").encode()
        while data:
            data = data[os.write(self._in, data) :]
        return self._next_id

    def read(self) -> dict[str, Any]:
        """The next message."""
        line = self._out.readline()
        if not line:
            raise RuntimeError("the server closed its stdout")
        return json.loads(line)

    def finish(self) -> None:
        """End of input; wait for a clean exit."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self._out.read()
        if self.proc.wait(60) != 0:
            raise RuntimeError(f"server exited with {self.proc.returncode}")

    def cpu_seconds(self) -> float:
        """The server's CPU time so far, user + system, all threads included (Linux)."""
        return _process_cpu(self.proc.pid)


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process, all its threads."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(
    args: list[str], home: Path, conversations: int, turns: int, words: int
) -> tuple[float, float]:
    """Turns per second of one server process, and its CPU microseconds per turn."""
    server = Server(args, home)
    try:
        ids = [f"bench-{n}" for n in range(conversations)]
        for cid in ids:
            server.send("newConversation", {"conversationId": cid})
        answered = 0
        while answered < conversations:
            msg = server.read()
            if "id" in msg:
                assert "result" in msg, msg
                answered += 1
        text = " ".join(f"word{n}" for n in range(words))
        turn_input = [{"type": "text", "text": text}]
        left = dict.fromkeys(ids, turns)
        done = 0
        total = conversations * turns
        start = time.perf_counter()
        cpu_start = server.cpu_seconds()
        for cid in ids:
            server.send("sendUserTurn", {"conversationId": cid, "input": turn_input})
        while done < total:
            msg = server.read()
            if "error" in msg:
                raise RuntimeError(f"request failed: {msg}")
            params = msg.get("params")
            if params is None or params["event"]["type"] != "turnComplete":
                continue
            done += 1
            cid = params["conversationId"]
            left[cid] -= 1
            if left[cid]:
                server.send("sendUserTurn", {"conversationId": cid, "input": turn_input})
        elapsed = time.perf_counter() - start
        cpu = server.cpu_seconds() - cpu_start
        server.finish()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
    return total / elapsed, cpu / total * 1e6


def main() -> None:
    """Alternate store / no-store runs; print the medians and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--turns", type=int, default=20, help="turns per conversation")
    parser.add_argument("--words", type=int, default=5, help="words per turn input")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where to put the temporary store")
    args = parser.parse_args()
    results: dict[str, list[float]] = {"store": [], "no-store": []}
    cpu: dict[str, list[float]] = {"store": [], "no-store": []}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        home = Path(tmp)
        for round_no in range(args.rounds):
            store = home / f"round-{round_no}.sqlite3"  # a fresh store file each round
            for name, flags in (("store", ["--store", str(store)]), ("no-store", ["--no-store"])):
                rate, cpu_us = one_run(flags, home, args.conversations, args.turns, args.words)
                results[name].append(rate)
                cpu[name].append(cpu_us)
    total = args.conversations * args.turns
    print(
        f"{args.conversations} conversations x {args.turns} echo turns of {args.words} words "
        f"({total} turns per run), lock-step per conversation; {args.rounds} rounds"
    )
    for name, values in results.items():
        print(
            f"{name:<9} median {statistics.median(values):8.0f} turns/s  "
            f"(min {min(values):.0f}, max {max(values):.0f});  "
            f"server CPU {statistics.median(cpu[name]):4.0f} us/turn"
        )
    ratio = statistics.median(results["store"]) / statistics.median(results["no-store"])
    print(f"store / no-store: {ratio:.2f}x  (target >= 0.8x)")


if __name__ == "__main__":
    main()
