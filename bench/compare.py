#!/usr/bin/env python3
"""Two checkouts of convmgr measured side by side, in one run, against their own noise.

    python bench/compare.py --base REV [--head DIR_OR_REV] [--rounds N] [--quick]
                            [--json PATH]

The base is REV checked out with `git worktree add --detach` in a temporary
directory (removed at the end). The head is a directory used as it is (working
tree changes included), or a revision checked out the same way as the base;
without --head it is the checkout this script lives in, as it is on disk. Revs
are resolved to commits once, at the start.

Both trees are measured by the same code: the benchmark scripts next to this
one (bench_core.py and bench_store_server.py, imported, not modified). Each
server runs with PYTHONPATH=<tree> and its working directory in a temporary
directory (`-m convmgr` puts the working directory first on sys.path, so a
checkout there would win over PYTHONPATH; the venv's editable install of the
main checkout is a meta-path finder, which PYTHONPATH also wins over). Before
measuring, a spawned `python -c 'import convmgr; print(convmgr.__file__)'`
with the same environment and directory must name a file inside the tree, or
the run stops; the store's commit process (a child of the server that imports
convmgr from wherever the server did) is checked too where it exists. Each
tree's convmgr is byte-compiled first, as an install would be.

Measurements, per round and per tree (the trees alternate phase by phase,
base first in even rounds and head first in odd ones, so drift in the
machine's load falls on both):

- cold start to the `initialize` answer: median of the cold spawns (sizes
  below; bench_core's cold phase: two warm-up spawns not counted), `--no-store`;
- `getConversation` pipelined, req/s, and lock-step p50 (bench_core);
- `newConversation` pipelined, conv/s, with `--no-store` (bench_core) and
  with a fresh SQLite store file (bench_core's phase on a server started with
  `--store FILE`);
- echo deltas/s, one conversation and several at once (bench_core);
- KiB of RSS per idle conversation, `--no-store` (bench_core);
- echo turns/s with the store and with `--no-store`, and their ratio
  (bench_store_server.one_run: lock-step turns per conversation, all
  conversations at once; PAIRS store/no-store runs alternating, medians);
- RSS after `initialize` with the store: one server, measured once its process
  tree has settled (same processes and RSS within 1 % over 4 samples 50 ms
  apart, at most 3 s): the server's RSS, the tree's total RSS (the server and
  every descendant, e.g. the commit process) and the tree's total PSS (shared
  pages split, so not counted twice).

Sizes (per tree per round), full / --quick:

    cold spawns              20 / 5
    getConversation          100,000 pipelined, 2,000 lock-step / 10,000, 500
    newConversation          20,000 no-store, 10,000 store / 2,000, 1,000
    echo stream              200,000 words; 10 x 50,000 words / 20,000; 4 x 5,000
    idle conversations       10,000 / 1,000
    store vs no-store turns  3 pairs of 100 conversations x 20 turns x 5 words
                             / 1 pair of 20 x 5 x 5
    RSS after initialize     1 server / 1 server

A full round takes ~50 s for both trees on a 2-core machine, so `--rounds 3`
takes ~2.5 minutes; `--quick` (3 rounds) ~40 s.

Output: a table per metric with each tree's median over the rounds, its spread
(min-max over the rounds: the noise figure), head/base of the medians, and
whether the two ranges overlap ("apart" = they do not). JSON with every
round's values goes to bench/results/compare.json (gitignored). This is a
script, not a test: nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_core  # noqa: E402  (sibling scripts, not a package)
import bench_store_server  # noqa: E402

ROOT = HERE.parent
RESULTS = ROOT / "bench" / "results" / "compare.json"


# --- sizes ----------------------------------------------------------------------------


@dataclass
class Sizes:
    core: bench_core.Sizes = field(
        default_factory=lambda: replace(bench_core.Sizes(), cold_runs=20, get_lockstep=2_000)
    )
    new_store: int = 10_000
    pairs: int = 3  # store / no-store turn runs per round
    conversations: int = 100
    turns: int = 20
    words: int = 5


QUICK = Sizes(
    core=replace(bench_core.QUICK, get_lockstep=500),
    new_store=1_000,
    pairs=1,
    conversations=20,
    turns=5,
    words=5,
)


# --- metrics --------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    better: str  # "higher", "lower" or "" (a count, neither)


METRICS = [
    Metric("cold_ms", "cold start -> initialize, median", "ms", "lower"),
    Metric("get_rps", "getConversation pipelined", "req/s", "higher"),
    Metric("get_p50_us", "getConversation lock-step p50", "us", "lower"),
    Metric("new_nostore", "newConversation pipelined, --no-store", "conv/s", "higher"),
    Metric("new_store", "newConversation pipelined, store", "conv/s", "higher"),
    Metric("stream_1", "echo deltas/s, 1 conversation", "deltas/s", "higher"),
    Metric("stream_k", "echo deltas/s, K conversations", "deltas/s", "higher"),
    Metric("idle_kib", "RSS per idle conversation", "KiB", "lower"),
    Metric("turns_store", "echo turns/s, store", "turns/s", "higher"),
    Metric("turns_nostore", "echo turns/s, --no-store", "turns/s", "higher"),
    Metric("store_ratio", "store / --no-store turns/s", "x", "higher"),
    Metric("rss_server", "RSS after initialize (store): server", "MiB", "lower"),
    Metric("rss_tree", "RSS after initialize (store): tree", "MiB", "lower"),
    Metric("pss_tree", "PSS after initialize (store): tree", "MiB", "lower"),
    Metric("tree_procs", "processes in the tree after initialize", "procs", ""),
]


# --- trees ----------------------------------------------------------------------------


@dataclass
class Tree:
    label: str  # "base" or "head"
    path: Path
    spec: str  # what was asked for
    commit: str | None
    dirty: bool | None  # uncommitted changes in convmgr/ (directories only)
    worktree: bool  # made here, removed at the end
    convmgr_file: str = ""
    values: dict[str, list[float | None]] = field(default_factory=dict)
    raw: list[dict[str, Any]] = field(default_factory=list)  # per round, everything
    errors: list[str] = field(default_factory=list)

    def env_path(self) -> str:
        old = os.environ.get("PYTHONPATH")
        return str(self.path) + (os.pathsep + old if old else "")

    def record(self, round_no: int, key: str, value: float | None) -> None:
        values = self.values.setdefault(key, [])
        while len(values) <= round_no:
            values.append(None)
        values[round_no] = value


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def resolve_commit(rev: str) -> str:
    try:
        return git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(
            f"compare: {rev!r} is neither a directory nor a revision of {ROOT}"
        ) from None


def add_worktree(label: str, rev: str, tmp: Path) -> Tree:
    commit = resolve_commit(rev)
    path = tmp / f"tree-{label}"
    git("worktree", "add", "--detach", str(path), commit)
    return Tree(label, path, rev, commit, False, True)


def directory_tree(label: str, directory: Path) -> Tree:
    path = directory.resolve()
    if not (path / "convmgr" / "__init__.py").is_file():
        raise SystemExit(f"compare: {path} has no convmgr/ package")
    commit: str | None = None
    dirty: bool | None = None
    with contextlib.suppress(subprocess.CalledProcessError, OSError):
        commit = git("rev-parse", "HEAD", cwd=path)
        dirty = bool(git("status", "--porcelain", "--", "convmgr", cwd=path))
    return Tree(label, path, str(directory), commit, dirty, False)


def remove_worktree(tree: Tree) -> None:
    try:
        git("worktree", "remove", "--force", str(tree.path))
    except subprocess.CalledProcessError as exc:
        print(
            f"compare: could not remove the worktree {tree.path}: {exc.stderr.strip()}\n"
            f"  remove it with: git worktree remove --force {tree.path}",
            file=sys.stderr,
        )


def check_tree(tree: Tree, env: dict[str, str], cwd: str) -> None:
    """The convmgr a server of this tree imports must be the tree's."""
    out = subprocess.run(
        [sys.executable, "-c", "import convmgr; print(convmgr.__file__)"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"compare: {tree.label}: cannot import convmgr:\n{out.stderr}")
    found = Path(out.stdout.strip()).resolve()
    if not found.is_relative_to(tree.path.resolve()):
        raise SystemExit(f"compare: {tree.label}: imports {found}, not from {tree.path}")
    tree.convmgr_file = str(found)
    print(f"{tree.label}: {tree.spec} -> {describe(tree)}; imports {found}", flush=True)


def describe(tree: Tree) -> str:
    commit = tree.commit[:10] if tree.commit else "?"
    if tree.worktree:
        return f"{commit} (worktree {tree.path})"
    return f"{tree.path} at {commit}" + (" + uncommitted changes" if tree.dirty else "")


# --- servers of a tree ------------------------------------------------------------------


class StoreServer(bench_core.Server):
    """bench_core's Server, started with `--store FILE` instead of `--no-store`."""

    def __init__(self, store: Path, env: dict[str, str], stderr_path: str, cwd: str) -> None:
        self._stderr = open(stderr_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "convmgr", "--store", str(store)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=cwd,
            bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        self.buf = b""
        self.next_id = 1_000_000_000


class StoreBench(bench_core.Bench):
    """bench_core's phases on servers with a fresh SQLite store file each."""

    spawned = 0

    def spawn(self, initialize: bool = True) -> bench_core.Server:
        StoreBench.spawned += 1
        store = Path(self.workdir) / f"store-{StoreBench.spawned}.sqlite3"
        server = StoreServer(store, self.env, self.stderr_path, self.workdir)
        if initialize:
            server.request("initialize", {"clientInfo": {"name": "bench"}})
        return server


def make_bench(
    cls: type[bench_core.Bench], tree: Tree, sizes: Sizes, workdir: Path
) -> bench_core.Bench:
    workdir.mkdir(parents=True, exist_ok=True)
    bench = cls(sizes.core, str(workdir))
    bench.env["PYTHONPATH"] = tree.env_path()
    bench.env.pop("CONVMGR_BENCH_CMD", None)
    return bench


@contextlib.contextmanager
def tree_environ(tree: Tree) -> Iterator[None]:
    """os.environ with the tree's PYTHONPATH (bench_store_server copies os.environ)."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = tree.env_path()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


# --- /proc ------------------------------------------------------------------------------


def proc_kib(pid: int, path: str, field_name: str) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/{path}") as f:
        for line in f:
            if line.startswith(field_name):
                return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    found = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{parent}/task"):
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    for child in f.read().split():
                        found.append(int(child))
                        todo.append(int(child))
    return found


def tree_sample(pid: int) -> dict[str, Any]:
    pids = [pid, *descendants(pid)]
    rss = {p: proc_kib(p, "status", "VmRSS:") for p in pids}
    return {"pids": pids, "rss_kib": rss, "total_kib": sum(rss.values())}


# --- phases -----------------------------------------------------------------------------


class Context:
    def __init__(self, tree: Tree, round_no: int, sizes: Sizes, workdir: Path) -> None:
        self.tree = tree
        self.round_no = round_no
        self.sizes = sizes
        self.workdir = workdir
        self.raw: dict[str, Any] = {}

    def bench(self, cls: type[bench_core.Bench] = bench_core.Bench) -> bench_core.Bench:
        name = "store" if cls is StoreBench else "nostore"
        return make_bench(cls, self.tree, self.sizes, self.workdir / name)

    def put(self, key: str, value: float | None) -> None:
        self.tree.record(self.round_no, key, value)
        self.raw[key] = value


def core_rows(
    ctx: Context, cls: type[bench_core.Bench], phase: Callable[[bench_core.Bench], None]
) -> list[bench_core.Row]:
    bench = ctx.bench(cls)
    phase(bench)
    ctx.raw.setdefault("rows", []).extend(asdict(r) for r in bench.rows)
    return bench.rows


def row_value(rows: list[bench_core.Row], prefix: str) -> float | None:
    for row in rows:
        if row.name.startswith(prefix):
            return row.value
    return None


def phase_cold(ctx: Context) -> None:
    rows = core_rows(ctx, bench_core.Bench, bench_core.Bench.cold_start)
    ctx.put("cold_ms", row_value(rows, "cold start -> initialize, median"))


def phase_get(ctx: Context) -> None:
    rows = core_rows(ctx, bench_core.Bench, bench_core.Bench.get_conversation)
    ctx.put("get_rps", row_value(rows, "getConversation pipelined"))
    ctx.put("get_p50_us", row_value(rows, "getConversation lock-step p50"))


def phase_new(ctx: Context) -> None:
    rows = core_rows(ctx, bench_core.Bench, bench_core.Bench.new_conversation)
    ctx.put("new_nostore", row_value(rows, "newConversation pipelined"))


def phase_new_store(ctx: Context) -> None:
    core = replace(ctx.sizes.core, new_pipelined=ctx.sizes.new_store)
    bench = make_bench(StoreBench, ctx.tree, replace(ctx.sizes, core=core), ctx.workdir / "store")
    bench.new_conversation()
    ctx.raw.setdefault("rows", []).extend(asdict(r) for r in bench.rows)
    ctx.put("new_store", row_value(bench.rows, "newConversation pipelined"))


def phase_stream(ctx: Context) -> None:
    rows = core_rows(ctx, bench_core.Bench, bench_core.Bench.streaming)
    ctx.put("stream_1", row_value(rows, "echo stream, 1 conversation"))
    ctx.put("stream_k", row_value(rows, f"echo stream, {ctx.sizes.core.stream_convs} conv"))


def phase_memory(ctx: Context) -> None:
    rows = core_rows(ctx, bench_core.Bench, bench_core.Bench.memory)
    ctx.put("idle_kib", row_value(rows, "RSS per idle conversation"))


def phase_store_ratio(ctx: Context) -> None:
    s = ctx.sizes
    home = ctx.workdir / "turns"
    home.mkdir(parents=True, exist_ok=True)
    rates: dict[str, list[float]] = {"store": [], "no-store": []}
    cpu: dict[str, list[float]] = {"store": [], "no-store": []}
    with tree_environ(ctx.tree):
        for pair in range(s.pairs):
            store = home / f"pair-{pair}.sqlite3"
            runs = [("store", ["--store", str(store)]), ("no-store", ["--no-store"])]
            if (ctx.round_no + pair) % 2:
                runs.reverse()
            for name, flags in runs:
                rate, cpu_us = bench_store_server.one_run(
                    flags, home, s.conversations, s.turns, s.words
                )
                rates[name].append(rate)
                cpu[name].append(cpu_us)
    with_store = statistics.median(rates["store"])
    without = statistics.median(rates["no-store"])
    ctx.put("turns_store", with_store)
    ctx.put("turns_nostore", without)
    ctx.put("store_ratio", with_store / without)
    ctx.raw["turns"] = {"rates": rates, "server_cpu_us_per_turn": cpu}
    print(
        f"  turns/s store {with_store:,.0f}, no-store {without:,.0f}, "
        f"ratio {with_store / without:.2f}; server CPU us/turn store "
        f"{statistics.median(cpu['store']):.0f}, no-store {statistics.median(cpu['no-store']):.0f}",
        flush=True,
    )


def phase_rss_init(ctx: Context) -> None:
    bench = ctx.bench(StoreBench)
    server = bench.spawn()  # initialize answered
    try:
        pid = server.proc.pid
        first = tree_sample(pid)
        t0 = time.perf_counter()
        samples = [first]
        stable = 0
        while time.perf_counter() - t0 < 3.0 and stable < 3:
            time.sleep(0.05)
            sample = tree_sample(pid)
            prev = samples[-1]
            same = sample["pids"] == prev["pids"] and abs(
                sample["total_kib"] - prev["total_kib"]
            ) <= 0.01 * max(1, prev["total_kib"])
            stable = stable + 1 if same else 0
            samples.append(sample)
        final = samples[-1]
        pss = {p: proc_kib(p, "smaps_rollup", "Pss:") for p in final["pids"]}
        children = final["pids"][1:]
        roots = []
        for child in children:
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
                if str(ctx.tree.path) in cmd:
                    roots.append("tree")
                elif "sys.path.insert" in cmd:
                    roots.append("OTHER TREE")
                    ctx.tree.errors.append(f"round {ctx.round_no}: child {child} runs {cmd!r}")
                else:
                    roots.append("?")
        settle_s = time.perf_counter() - t0
    finally:
        server.close()
    ctx.put("rss_server", final["rss_kib"][pid] / 1024)
    ctx.put("rss_tree", final["total_kib"] / 1024)
    ctx.put("pss_tree", sum(pss.values()) / 1024)
    ctx.put("tree_procs", len(final["pids"]))
    ctx.raw["rss_init"] = {
        "server_rss_kib_at_answer": first["rss_kib"][pid],
        "tree_kib_at_answer": first["total_kib"],
        "procs_at_answer": len(first["pids"]),
        "final_rss_kib": {str(k): v for k, v in final["rss_kib"].items()},
        "final_pss_kib": {str(k): v for k, v in pss.items()},
        "settled_after_s": round(settle_s, 3),
        "stable": stable >= 3,
        "children_import_from": roots,
    }
    print(
        f"  RSS after initialize: server {final['rss_kib'][pid] / 1024:.1f} MiB, "
        f"tree {final['total_kib'] / 1024:.1f} MiB ({len(final['pids'])} processes, "
        f"PSS {sum(pss.values()) / 1024:.1f} MiB); children import from {roots or '-'}",
        flush=True,
    )


PHASES: list[tuple[str, Callable[[Context], None]]] = [
    ("cold", phase_cold),
    ("get", phase_get),
    ("new", phase_new),
    ("new-store", phase_new_store),
    ("stream", phase_stream),
    ("memory", phase_memory),
    ("store-ratio", phase_store_ratio),
    ("rss-init", phase_rss_init),
]


def stderr_tails(workdir: Path) -> dict[str, str]:
    """The non-empty server stderr logs of a round, last 2,000 characters each."""
    tails = {}
    for log in sorted(workdir.glob("*/server-stderr.log")):
        text = log.read_text(errors="replace")
        if text.strip():
            tails[str(log.relative_to(workdir))] = text[-2000:]
    return tails


# --- report -----------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}"
    if unit == "procs":
        return f"{value:g}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def summary(values: list[float | None]) -> dict[str, Any]:
    got = [v for v in values if v is not None]
    if not got:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(got), "min": min(got), "max": max(got), "n": len(got)}


def table(base: Tree, head: Tree, sizes: Sizes) -> tuple[list[dict[str, Any]], str]:
    out = []
    lines = []
    for m in METRICS:
        b = summary(base.values.get(m.key, []))
        h = summary(head.values.get(m.key, []))
        ratio = h["median"] / b["median"] if b["median"] and h["median"] is not None else None
        apart = None  # with one round, a range says nothing about the noise
        if b["n"] > 1 and h["n"] > 1:
            apart = h["min"] > b["max"] or h["max"] < b["min"]
        noise = [
            (s["max"] - s["min"]) / s["median"] * 100 for s in (b, h) if s["n"] > 1 and s["median"]
        ]
        label = m.label.replace("K conv", f"{sizes.core.stream_convs} conv")
        if m.key == "idle_kib":
            label += f" ({sizes.core.idle_convs:,})"
        out.append(
            {
                "metric": m.key,
                "label": label,
                "unit": m.unit,
                "better": m.better,
                "base": b,
                "head": h,
                "head_over_base": ratio,
                "ranges_apart": apart,
                "noise_pct": max(noise) if noise else None,
            }
        )
        lines.append(
            (
                label + (f" [{m.unit}]" if m.unit else ""),
                {"higher": "up", "lower": "down"}.get(m.better, ""),
                fmt(b["median"], m.unit),
                f"{fmt(b['min'], m.unit)}-{fmt(b['max'], m.unit)}" if b["n"] else "-",
                fmt(h["median"], m.unit),
                f"{fmt(h['min'], m.unit)}-{fmt(h['max'], m.unit)}" if h["n"] else "-",
                f"{ratio:.3f}" if ratio is not None else "-",
                f"{max(noise):.0f}%" if noise else "-",
                "-" if apart is None else ("apart" if apart else "overlap"),
            )
        )
    headers = (
        "metric",
        "better",
        "base median",
        "base min-max",
        "head median",
        "head min-max",
        "head/base",
        "noise",
        "ranges",
    )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    text = [
        "  ".join(
            h.ljust(w) if i < 2 else h.rjust(w)
            for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        ),
        "  ".join("-" * w for w in widths),
    ]
    for line in lines:
        text.append(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
    return out, "\n".join(text)


# --- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="See the module docstring for what is measured and the sizes.",
    )
    parser.add_argument("--base", required=True, metavar="REV", help="the revision to compare to")
    parser.add_argument(
        "--head",
        default=None,
        metavar="DIR_OR_REV",
        help=f"a checkout directory (as it is) or a revision (default: {ROOT}, as it is)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per tree (default 3)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--json", type=Path, default=RESULTS, help=f"results file (default {RESULTS})"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    sizes = QUICK if args.quick else Sizes()
    json_path = args.json.resolve()
    if os.environ.pop("CONVMGR_BENCH_CMD", None):
        print("compare: ignoring CONVMGR_BENCH_CMD (it would replace the tree's server)")

    # SIGTERM ends the run through the finally clauses (worktrees removed).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    load_before = os.getloadavg()
    trees: list[Tree] = []
    tmp = Path(tempfile.mkdtemp(prefix="convmgr-compare-"))
    old_cwd = os.getcwd()
    try:
        base = add_worktree("base", args.base, tmp)
        trees.append(base)
        if args.head is None:
            head = directory_tree("head", ROOT)
        elif Path(args.head).is_dir():
            head = directory_tree("head", Path(args.head))
        else:
            head = add_worktree("head", args.head, tmp)
        trees.append(head)
        if base.path.resolve() == head.path.resolve():
            raise SystemExit("compare: base and head are the same directory")

        # Servers (and bench_store_server's, which inherit it) run here, not in a checkout.
        work = tmp / "work"
        work.mkdir()
        os.chdir(work)
        for tree in trees:
            compileall.compile_dir(str(tree.path / "convmgr"), quiet=1)
            check_env = bench_core.server_env(str(work / "check"))
            check_env["PYTHONPATH"] = tree.env_path()
            check_tree(tree, check_env, str(work))
        print(
            f"load average {load_before[0]:.2f} (cpus {os.cpu_count()}); "
            f"{args.rounds} rounds{' (quick sizes)' if args.quick else ''}",
            flush=True,
        )

        rounds_meta = []
        for round_no in range(args.rounds):
            order = [base, head] if round_no % 2 == 0 else [head, base]
            contexts = {
                t.label: Context(t, round_no, sizes, work / f"round-{round_no}" / t.label)
                for t in trees
            }
            t_round = time.perf_counter()
            load = os.getloadavg()[0]
            print(f"\n=== round {round_no + 1}/{args.rounds} (load {load:.2f})", flush=True)
            for name, phase in PHASES:
                for tree in order:
                    print(f"[{name}] {tree.label}", flush=True)
                    try:
                        phase(contexts[tree.label])
                    except Exception as exc:  # one broken phase does not end the run
                        msg = f"round {round_no}: {name}: {exc!r}"[:300]
                        tree.errors.append(msg)
                        print(f"  FAILED: {msg}", flush=True)
            for tree in trees:
                ctx = contexts[tree.label]
                ctx.raw["server_stderr_tails"] = stderr_tails(ctx.workdir)
                tree.raw.append(ctx.raw)
            rounds_meta.append(
                {
                    "order": [t.label for t in order],
                    "loadavg_start": round(load, 2),
                    "loadavg_end": round(os.getloadavg()[0], 2),
                    "elapsed_s": round(time.perf_counter() - t_round, 1),
                }
            )
            print(f"=== round {round_no + 1} took {rounds_meta[-1]['elapsed_s']} s", flush=True)

        rows, text = table(base, head, sizes)
        print()
        print(f"base: {base.spec} -> {describe(base)}")
        print(f"head: {head.spec} -> {describe(head)}")
        print(
            f"{args.rounds} rounds; medians and min-max over rounds; noise = the wider "
            "tree's (max-min)/median; ranges apart = no overlap of the two min-max\n"
        )
        print(text)
        for tree in trees:
            for err in tree.errors:
                print(f"{tree.label}: {err}", file=sys.stderr)
        report = {
            "base": {k: v for k, v in asdict(base).items() if k not in ("values", "raw")},
            "head": {k: v for k, v in asdict(head).items() if k not in ("values", "raw")},
            "rounds": args.rounds,
            "quick": args.quick,
            "sizes": asdict(sizes),
            "table": rows,
            "values": {t.label: t.values for t in trees},
            "rounds_meta": rounds_meta,
            "raw": {t.label: t.raw for t in trees},
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "elapsed_s": round(time.perf_counter() - started, 1),
        }
        for side in ("base", "head"):
            report[side]["path"] = str(report[side]["path"])
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"\nresults written to {json_path} ({report['elapsed_s']} s)")
        return 1 if any(t.errors for t in trees) else 0
    finally:
        os.chdir(old_cwd)
        for tree in trees:
            if tree.worktree:
                remove_worktree(tree)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
