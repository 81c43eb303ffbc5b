"""Benchmarks of the OpenAI-compatible providers against a local fake server (not a test).

Usage: python bench/bench_http_provider.py [--deltas N] [--streams N] [--repeat N]

Targets (issue 4):
- a turn that streams 2,000 deltas: the provider adds <= 10 % to the time the
  server takes to send them;
- 100 turns streaming at once: no delta lost, event-loop lag p99 <= 20 ms.

The fake server (tests/fake_openai.py) runs in its own process, so that its work
does not count as the provider's; it reports how long it took to send a stream
(GET /_stats). Event-loop lag is measured by a ticker task that sleeps 1 ms and
records how late it wakes up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

from convmgr.model import message_item
from convmgr.providers.base import Retrying, TextDelta, TurnRequest, Usage
from convmgr.providers.http import HttpProviderSettings, OpenAICompatibleProvider
from convmgr.providers.openai_chat import OpenAIChatProvider
from convmgr.providers.openai_responses import OpenAIResponsesProvider

ROOT = Path(__file__).resolve().parent.parent
KINDS: dict[str, type[OpenAICompatibleProvider]] = {
    "openai-chat": OpenAIChatProvider,
    "openai-responses": OpenAIResponsesProvider,
}


@contextmanager
def fake_server() -> Iterator[str]:
    """A fake OpenAI server in a child process; yields its base URL."""
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_openai.py")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        yield child.stdout.readline().strip()
    finally:
        child.terminate()
        child.wait(5)


def provider(kind: str, base_url: str) -> OpenAICompatibleProvider:
    """A provider of that kind for the fake server."""
    settings = HttpProviderSettings(
        name="bench", base_url=base_url, default_model="m", request_timeout_s=30, max_retries=0
    )
    return KINDS[kind](settings)


def request(model: str) -> TurnRequest:
    """A turn whose model name is the fake server's script."""
    return TurnRequest(
        model=model, instructions=None, history=[message_item("user", "go")], input_text="go"
    )


async def run_turn(prov: OpenAICompatibleProvider, model: str) -> tuple[str, int, bool]:
    """Consume one turn as the core does: the text, the number of deltas, whether usage came."""
    text: list[str] = []
    usage = False
    async for event in prov.stream(request(model)):
        if type(event) is TextDelta:
            text.append(event.text)
        elif type(event) is Usage:
            usage = True
        elif type(event) is Retrying:
            raise RuntimeError(f"unexpected retry: {event.message}")
    return "".join(text), len(text), usage


def expected_text(count: int) -> str:
    """What `deltas:<count>` streams."""
    return "".join(f"w{i} " for i in range(count))


async def single_turn(
    base_url: str, kind: str, deltas: int, interval_ms: float, repeat: int
) -> dict[str, Any]:
    """Median provider overhead over the server's send time for one streamed turn."""
    prov = provider(kind, base_url)
    model = f"deltas:{deltas}:{interval_ms:g}"
    rows = []
    async with httpx.AsyncClient() as stats:
        await run_turn(prov, model)  # warm up: imports, connection
        for _ in range(repeat):
            started = time.perf_counter()
            text, count, usage = await run_turn(prov, model)
            client_s = time.perf_counter() - started
            assert text == expected_text(deltas) and count == deltas and usage
            server_s = (await stats.get(base_url.replace("/v1", "/_stats"))).json()["last_stream_s"]
            rows.append((client_s, server_s))
    await prov.aclose()
    client_s = statistics.median(r[0] for r in rows)
    server_s = statistics.median(r[1] for r in rows)
    overhead = statistics.median((c - s) / s for c, s in rows)
    return {
        "kind": kind,
        "pace": f"{interval_ms:g} ms" if interval_ms else "burst",
        "server_ms": server_s * 1000,
        "client_ms": client_s * 1000,
        "overhead": overhead,
        "us_per_delta": (client_s - server_s) / deltas * 1e6 if not interval_ms else None,
    }


async def ticker(lags: list[float], done: anyio.Event) -> None:
    """Sleep 1 ms at a time until `done`, recording how late each wake-up is."""
    while not done.is_set():
        before = time.perf_counter()
        await anyio.sleep(0.001)
        lags.append(time.perf_counter() - before - 0.001)


def percentiles(lags: list[float]) -> dict[str, float]:
    """p50, p99 and max of the lags, in ms."""
    lags = sorted(lags)
    return {
        "lag_p50_ms": lags[len(lags) // 2] * 1000,
        "lag_p99_ms": lags[int(len(lags) * 0.99)] * 1000,
        "lag_max_ms": lags[-1] * 1000,
    }


async def idle_lag(seconds: float) -> dict[str, float]:
    """The ticker's lateness with nothing else to do: what the machine itself adds."""
    lags: list[float] = []
    done = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(ticker, lags, done)
        await anyio.sleep(seconds)
        done.set()
    return percentiles(lags)


async def concurrent(
    base_url: str, kind: str, streams: int, deltas: int, interval_ms: float, jitter: bool
) -> dict[str, Any]:
    """Many turns at once from one provider: lost deltas and event-loop lag."""
    prov = provider(kind, base_url)
    model = f"deltas:{deltas}:{interval_ms:g}" + (":jitter" if jitter else "")
    await run_turn(prov, "deltas:1")  # warm up
    lags: list[float] = []
    results: list[tuple[str, int, bool]] = []
    done = anyio.Event()

    async def one() -> None:
        results.append(await run_turn(prov, model))

    started = time.perf_counter()
    cpu_started = time.process_time()
    async with anyio.create_task_group() as outer:
        outer.start_soon(ticker, lags, done)
        async with anyio.create_task_group() as group:
            for _ in range(streams):
                group.start_soon(one)
        done.set()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    await prov.aclose()
    want = expected_text(deltas)
    complete = sum(1 for text, count, usage in results if text == want and count == deltas)
    return {
        "kind": kind,
        "pace": f"{interval_ms:g} ms" + (" ~" if jitter else ""),
        "streams": streams,
        "complete": complete,
        "lost": streams * deltas - sum(count for _, count, _ in results),
        "elapsed_s": elapsed,
        "deltas_per_s": streams * deltas / elapsed,
        "busy": cpu / elapsed,
        "cpu_us_per_delta": cpu / (streams * deltas) * 1e6,
        **percentiles(lags),
    }


async def main(args: argparse.Namespace) -> None:
    """Run both benchmarks for both kinds and print the tables."""
    # Other work on the machine shows up as event-loop lag: say how busy it was.
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with fake_server() as base_url:
        singles = []
        for kind in KINDS:
            for interval in (1.0, 0.0):
                singles.append(
                    await single_turn(base_url, kind, args.deltas, interval, args.repeat)
                )
        print(f"\n1. one turn of {args.deltas} deltas (median of {args.repeat}; target <= 10 %)")
        print(
            f"{'kind':<18}{'pace':>8}{'server ms':>11}{'client ms':>11}{'overhead':>10}"
            f"{'us/delta':>10}"
        )
        for row in singles:
            per = f"{row['us_per_delta']:.1f}" if row["us_per_delta"] is not None else "-"
            print(
                f"{row['kind']:<18}{row['pace']:>8}{row['server_ms']:>11.1f}"
                f"{row['client_ms']:>11.1f}{row['overhead']:>10.1%}{per:>10}"
            )

        idle = await idle_lag(2.0)
        rows = [
            await concurrent(base_url, kind, args.streams, args.stream_deltas, interval, jitter)
            for jitter in (True, False)
            for interval in args.interval_ms
            for kind in KINDS
        ]
        print(
            f"\n2. {args.streams} turns at once, {args.stream_deltas} deltas each "
            "(target: none lost, lag p99 <= 20 ms)\n"
            "   ~: pauses vary from 0 to twice the pace; otherwise all streams send in step"
        )
        print(
            f"{'kind':<18}{'pace':>9}{'complete':>9}{'lost':>6}{'elapsed s':>10}{'deltas/s':>9}"
            f"{'cpu':>6}{'us/delta':>9}{'lag p50':>8}{'lag p99':>8}{'lag max':>8}"
        )
        for row in rows:
            print(
                f"{row['kind']:<18}{row['pace']:>9}{row['complete']:>9}{row['lost']:>6}"
                f"{row['elapsed_s']:>10.2f}{row['deltas_per_s']:>9.0f}{row['busy']:>6.0%}"
                f"{row['cpu_us_per_delta']:>9.0f}{row['lag_p50_ms']:>8.2f}"
                f"{row['lag_p99_ms']:>8.2f}{row['lag_max_ms']:>8.2f}"
            )
        print(
            f"{'(idle ticker)':<18}{'':>9}{'':>9}{'':>6}{'':>10}{'':>9}{'':>6}{'':>9}"
            f"{idle['lag_p50_ms']:>8.2f}{idle['lag_p99_ms']:>8.2f}{idle['lag_max_ms']:>8.2f}"
        )
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--deltas", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--stream-deltas", type=int, default=200)
    parser.add_argument(
        "--interval-ms",
        type=lambda text: [float(part) for part in text.split(",")],
        default=[20.0, 10.0, 5.0],
        help="pause between a stream's deltas, comma-separated for several runs",
    )
    os.environ.pop("CONVMGR_CONFIG", None)
    anyio.run(main, parser.parse_args())
