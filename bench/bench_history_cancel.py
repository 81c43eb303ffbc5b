#!/usr/bin/env python3
"""How long a cancelled history read takes to answer, through the real server (not a test).

    python bench/bench_history_cancel.py [--items N] [--runs N] [--delay-ms MS] [--root DIR]

Builds a store holding one conversation of N items (default 200,000), starts
`python -m convmgr --store FILE` on it, and for each run sends `getConversation
{includeHistory: true}` for the whole history, waits --delay-ms so that the
store's read is running, then sends `$/cancelRequest` and times cancel -> the
request's answer (-32800, or the result when the read won the race). For
reference it also times the uncancelled read. --root picks the convmgr source
tree to run (default: this checkout), so an older tree can be measured the same way.
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

ROOT = Path(__file__).resolve().parent.parent

BUILD = """
import sys
import anyio
from convmgr.model import ConversationRecord, ConversationSettings, message_item, utc_now
from convmgr.store.sqlite import SqliteStore

async def main(path, n):
    store = SqliteStore(path)
    await store.open()
    items = [message_item("user" if i % 2 == 0 else "assistant",
                          f"item {i}: " + "some words of a conversation " * 4)
             for i in range(n)]
    now = utc_now()
    record = ConversationRecord(conversation_id="big",
                                settings=ConversationSettings(provider="echo", model="echo"),
                                created_at=now, updated_at=now, history_length=n)
    await store.create(record, items)
    await store.close()

anyio.run(main, sys.argv[1], int(sys.argv[2]))
"""


class Server:
    """A convmgr child on ndjson pipes; requests and answers read in this thread."""

    def __init__(self, root: Path, store: Path, home: Path) -> None:
        env = dict(os.environ)
        env.pop("CONVMGR_CONFIG", None)
        env["PYTHONPATH"] = str(root)
        env["CONVMGR_HOME"] = str(home)
        env["XDG_CONFIG_HOME"] = str(home / "config")
        env["XDG_DATA_HOME"] = str(home / "data")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "convmgr", "--store", str(store)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=home,  # not a checkout: -m convmgr must find the one on PYTHONPATH
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout
        self._next = 0

    def send(self, msg: dict[str, Any]) -> None:
        data = (json.dumps(msg) + "\n").encode()
        while data:
            data = data[os.write(self._in, data) :]

    def request(self, method: str, params: dict[str, Any]) -> int:
        self._next += 1
        self.send({"jsonrpc": "2.0", "id": self._next, "method": method, "params": params})
        return self._next

    def answer(self, msg_id: int) -> dict[str, Any]:
        while True:
            line = self._out.readline()
            if not line:
                raise RuntimeError(f"server exited ({self.proc.wait()})")
            msg = json.loads(line)
            if msg.get("id") == msg_id:
                return msg  # type: ignore[no-any-return]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self._out.read()
        self.proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args()
    root = args.root.resolve()
    with tempfile.TemporaryDirectory(prefix="bench-cancel-") as tmp:
        home = Path(tmp)
        store = home / "big.sqlite3"
        env = dict(os.environ, PYTHONPATH=str(root))
        subprocess.run(
            [sys.executable, "-c", BUILD, str(store), str(args.items)], env=env, check=True
        )
        server = Server(root, store, home)
        server.answer(server.request("initialize", {}))
        params = {"conversationId": "big", "includeHistory": True}
        full = []
        for _ in range(3):
            t0 = time.perf_counter()
            reply = server.answer(server.request("getConversation", params))
            full.append(time.perf_counter() - t0)
            assert "result" in reply or "error" in reply
        cancel_ms: list[float] = []
        outcomes: list[str] = []
        for _ in range(args.runs):
            msg_id = server.request("getConversation", params)
            time.sleep(args.delay_ms / 1000)  # the read is under way (a benchmark, not a test)
            t0 = time.perf_counter()
            server.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": msg_id}})
            reply = server.answer(msg_id)
            cancel_ms.append((time.perf_counter() - t0) * 1000)
            outcomes.append(str(reply["error"]["code"]) if "error" in reply else "result")
        server.close()
    print(f"root: {root}")
    median = statistics.median(cancel_ms)
    print(
        f"history: {args.items} items; uncancelled read, median of 3: "
        f"{statistics.median(full) * 1000:.0f} ms"
    )
    print(
        f"cancel -> answer after {args.delay_ms:.0f} ms: median {median:.1f} ms, "
        f"max {max(cancel_ms):.1f} ms over {len(cancel_ms)} runs (target < 100 ms); "
        f"answers: {', '.join(outcomes)}"
    )


if __name__ == "__main__":
    main()
