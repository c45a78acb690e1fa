"""Baton's orchestration benchmarks, run by hand (results and method: docs/benchmarks.md).

    .venv/bin/python bench/run.py                       # everything, SQLite, 5 trials
    .venv/bin/python bench/run.py chain-20 parallel     # some scenarios
    .venv/bin/python bench/run.py --db postgresql       # the same on PostgreSQL
    .venv/bin/python bench/run.py chain-20 --breakdown  # where the time goes, per layer
    .venv/bin/python bench/run.py chain-20 --profile    # cProfile, in process

Every trial runs in a fresh process (``--child``) with a fresh database: a SQLite file in a
temporary directory (WAL, synchronous=NORMAL, as Baton configures it) or a fresh PostgreSQL
database made through ``$BATON_BENCH_PG_URL`` (default postgresql://postgres@127.0.0.1:5432/test)
and dropped afterwards. Before each trial the parent waits for the machine to be idle. The
real engine is used end to end (``open_engine`` → ``start_plan`` → ``wait``); only the model
is replaced, by an in-process stand-in for the network boundary that answers at once (or
after ``asyncio.sleep(d)``). The figure reported is the median over trials of each trial's
median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents import Risk, ToolContext, tool
from agents.bootstrap import open_engine
from agents.engine import Engine
from agents.model import ModelReply
from agents.plan import Plan, PlanStep
from agents.registry import Registry, build_registry
from agents.settings import Limits, Settings
from storage.database import Database

PG_ADMIN_URL = os.environ.get("BATON_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


# ---- the stand-in for the model, and two tools ------------------------------------------------
class StandIn:
    """A :class:`~agents.model.ModelClient` that answers at once, or after ``delay`` seconds.

    It stands where the network call to a provider would be; everything on Baton's side of
    that boundary (prompts, transcripts, ledger, state) is the real code.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0

    async def complete(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        response_format: dict[str, Any] | None = None,
        timeout_s: float = 120.0,
    ) -> ModelReply:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return ModelReply(content=f"result {self.calls}", tokens_in=120, tokens_out=30)


@tool(risk=Risk.READ_ONLY)
async def bench_lookup(topic: str) -> str:
    """Look something up (read-only, returns at once)."""
    return f"facts about {topic}"


@tool(risk=Risk.WRITES)
async def bench_record(entry: str, ctx: ToolContext) -> str:
    """Record an entry (a write: intent and result go to the ledger)."""
    return f"recorded {entry}"


def registry() -> Registry:
    reg = build_registry()
    reg.add_tool(bench_lookup)
    reg.add_tool(bench_record)
    return reg


# ---- plans ----------------------------------------------------------------------------------
AGENTS = ("researcher", "writer", "reviewer", "analyst")


def chain_plan(n: int, kind: str = "agent") -> Plan:
    """``n`` steps, each depending on the one before."""
    steps = []
    for i in range(n):
        deps = [f"s{i - 1}"] if i else []
        if kind == "agent":
            step = PlanStep(
                id=f"s{i}",
                title=f"Step {i}",
                agent=AGENTS[i % len(AGENTS)],
                instructions=f"Do part {i} of the work.",
                depends_on=deps,
            )
        else:
            name, arg = ("bench_lookup", "topic") if kind == "read" else ("bench_record", "entry")
            step = PlanStep(
                id=f"s{i}",
                title=f"Step {i}",
                tool=name,
                arguments={arg: f"item {i}"},
                depends_on=deps,
            )
        steps.append(step)
    return Plan(steps=steps)


def fan_plan(n: int) -> Plan:
    """``n`` independent agent steps."""
    return Plan(
        steps=[
            PlanStep(id=f"p{i}", title=f"Part {i}", agent=AGENTS[i % len(AGENTS)]) for i in range(n)
        ]
    )


# ---- scenarios ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    unit: str  # "us/step" or "ratio"
    reps: int  # measured repetitions per trial (after one warm-up)
    bar: float | None


SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "floor",
            "calibration, not Baton: 20 chained asyncio tasks, each one stand-in call and one "
            "INSERT + COMMIT through stdlib sqlite3 (WAL, NORMAL)",
            "us/step",
            200,
            None,
        ),
        Scenario("chain-1", "1 agent step, zero-latency model", "us/step", 200, None),
        Scenario(
            "chain-20", "20-step chain of agent steps, zero-latency model", "us/step", 40, 300
        ),
        Scenario(
            "chain-100", "100-step chain of agent steps, zero-latency model", "us/step", 8, None
        ),
        Scenario("tool-read-20", "20-step chain of read-only tool steps", "us/step", 40, 300),
        Scenario(
            "tool-write-20",
            "20-step chain of WRITES tool steps (intent + result), approve_writes=False",
            "us/step",
            40,
            300,
        ),
        Scenario("parallel", "10 independent agent steps, model sleeps 0.1 s", "ratio", 5, 1.05),
        Scenario(
            "concurrent",
            "100 concurrent runs of 5 sequential agent steps, model sleeps 0.05 s",
            "ratio",
            3,
            1.2,
        ),
    )
}


def settings_for(url: str) -> Settings:
    return Settings(
        database_url=url,
        model="standin/zero",
        limits=Limits(max_steps=1000, max_model_calls=100_000, max_tokens=10**12, max_cost_usd=1e9),
        concurrency=1000,
        approve_writes=False,
    )


@contextlib.asynccontextmanager
async def database(kind: str) -> AsyncIterator[str]:
    """A fresh, empty database URL, removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
            yield f"sqlite:///{tmp}/baton.db"
        return
    import psycopg

    name = f"baton_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def one_run(engine: Engine, plan: Plan) -> float:
    """Wall time of one run, from ``start_plan`` until ``wait`` returns."""
    t0 = time.perf_counter()
    run_id = await engine.start_plan("Benchmark goal: orchestrate the steps.", plan)
    summary = await engine.wait(run_id)
    wall = time.perf_counter() - t0
    if summary.status != "done":
        raise RuntimeError(f"run {run_id} ended {summary.status}: {summary.error}")
    return wall


async def many_runs(engine: Engine, plan: Plan, n: int) -> float:
    """Wall time to start ``n`` runs at once and wait for all of them."""
    t0 = time.perf_counter()
    ids = await asyncio.gather(*(engine.start_plan(f"Benchmark goal {i}.", plan) for i in range(n)))
    summaries = await asyncio.gather(*(engine.wait(r) for r in ids))
    wall = time.perf_counter() - t0
    bad = [s for s in summaries if s.status != "done"]
    if bad:
        raise RuntimeError(f"{len(bad)} runs did not finish: {bad[0]}")
    return wall


async def floor_run(engine: Engine) -> float:
    """The anchors' "+ one INSERT and COMMIT per step, stdlib sqlite3" floor, on this machine."""
    conn = _FLOOR_DB.get(engine.svc.db.url)
    if conn is None:  # one connection per process, like Baton's
        path = f"{engine.svc.db.url.split(':///', 1)[1]}-floor"
        conn = _FLOOR_DB[engine.svc.db.url] = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE t (run TEXT, step INTEGER, output TEXT)")
    model, run = StandIn(), uuid.uuid4().hex

    async def step(i: int, before: str) -> str:
        reply = await model.complete(model="m", messages=[{"role": "user", "content": before}])
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t VALUES (?, ?, ?)", (run, i, reply.content))
        conn.execute("COMMIT")
        return reply.content or ""

    t0 = time.perf_counter()
    out = ""
    for i in range(20):
        out = await asyncio.create_task(step(i, out))
    return time.perf_counter() - t0


_FLOOR_DB: dict[str, sqlite3.Connection] = {}


#: The anchors' floor (perf-anchors.md: "+ one INSERT and COMMIT per step, stdlib sqlite3,
#: WAL, synchronous=NORMAL"), in µs per step, on the machine where the bars were set.
ANCHOR_FLOOR_US = 18.5


def workload(
    name: str, scale: float = 1.0
) -> tuple[float, Callable[[Engine], Any], Callable[[float], float]]:
    """(model delay, one measured repetition, wall → reported value) for a scenario.

    ``scale`` stretches the model's delays, and the ideal time with them: on a machine
    ``scale`` times slower than the anchors' one, the ratio scenarios then see the same
    proportion of CPU work to waiting as they would there (see ``--time-scale``).
    """
    if name.startswith("chain-"):
        n = int(name.split("-")[1])
        plan = chain_plan(n)
        return 0.0, lambda e: one_run(e, plan), lambda w: w / n * 1e6
    if name.startswith("tool-"):
        kind = name.split("-")[1]
        plan = chain_plan(20, kind)
        return 0.0, lambda e: one_run(e, plan), lambda w: w / 20 * 1e6
    if name == "floor":
        return 0.0, floor_run, lambda w: w / 20 * 1e6
    if name == "parallel":
        plan = fan_plan(10)
        return 0.1 * scale, lambda e: one_run(e, plan), lambda w: w / (0.1 * scale)
    if name == "concurrent":
        plan = chain_plan(5)
        return (
            0.05 * scale,
            lambda e: many_runs(e, plan, 100),
            lambda w: w / (0.25 * scale),
        )
    raise SystemExit(f"unknown scenario {name!r}")


class Counter:
    """Counts SQL statements and commits on the engine's connection (a separate, untimed run)."""

    def __init__(self, db: Database) -> None:
        from sqlalchemy import event

        sync = db._sync_engine or (db._async_engine.sync_engine if db._async_engine else None)
        assert sync is not None
        self.statements = 0
        self.commits = 0
        self.by_verb: dict[str, int] = {}
        if db._sync_conn is not None:
            # SQLite: the driver's own trace sees every statement, including those sent
            # straight to the driver (storage.repositories.steps.write, the group commit's
            # BEGIN/SAVEPOINT/COMMIT), and every COMMIT however it is issued.
            raw = db._sync_conn.connection.driver_connection
            assert raw is not None
            raw.set_trace_callback(self._verb)
        else:
            event.listen(sync, "commit", self._commit)
            event.listen(sync, "before_cursor_execute", self._stmt)

    def _stmt(self, _conn: Any, _cur: Any, statement: str, *_args: Any) -> None:
        self._verb(statement)

    def _verb(self, statement: str) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb == "COMMIT":
            self.commits += 1
        if verb in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"):
            return
        self.statements += 1
        self.by_verb[verb] = self.by_verb.get(verb, 0) + 1

    def _commit(self, _conn: Any) -> None:
        self.commits += 1


def steps_in(name: str) -> int:
    return {"floor": 20, "parallel": 10, "concurrent": 500}.get(name) or int(name.rsplit("-", 1)[1])


async def child(name: str, db_kind: str, reps: int | None, scale: float) -> dict[str, Any]:
    scenario = SCENARIOS[name]
    delay, rep, value = workload(name, scale)
    async with database(db_kind) as url:
        engine = await open_engine(settings_for(url), model=StandIn(delay), registry=registry())
        rss_setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        await rep(engine)  # warm-up: first statement compilations, lazy imports
        n_reps = reps or scenario.reps
        cpu0 = time.process_time()
        values = [value(await rep(engine)) for _ in range(n_reps)]
        cpu = time.process_time() - cpu0
        counter = Counter(engine.svc.db)
        await rep(engine)
        await engine.close()
        await engine.svc.db.close()
    n = steps_in(name)
    return {
        "scenario": name,
        "values": values,
        "median": statistics.median(values),
        # CPU time of this process per step: less sensitive to other load than wall time.
        "cpu_us_per_step": cpu / (n_reps * steps_in(name)) * 1e6,
        "rss_setup_kb": rss_setup,
        "rss_peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "statements_per_step": counter.statements / n,
        "commits_per_step": counter.commits / n,
        "by_verb_per_step": {k: v / n for k, v in sorted(counter.by_verb.items())},
    }


# ---- the parent: trials in fresh processes, a markdown table ----------------------------------
def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(seconds: float) -> float:
    """How many cores other processes keep busy, sampled over ``seconds``."""
    b0, t0 = cpu_jiffies()
    time.sleep(seconds)
    b1, t1 = cpu_jiffies()
    return (b1 - b0) / max(1, t1 - t0) * (os.cpu_count() or 1)


def wait_for_idle(limit: float, timeout: float) -> float:
    """Wait (up to ``timeout`` s) until other processes use under ``limit`` cores."""
    deadline = time.monotonic() + timeout
    said = False
    while True:
        busy = busy_cores(0.5)
        if busy < limit or time.monotonic() > deadline:
            return busy
        if not said:
            print(f"  (waiting for an idle machine: {busy:.2f} cores busy)", file=sys.stderr)
            said = True
        time.sleep(2)


def code_version() -> str:
    """Where the engine under test was imported from, and its git revision if any."""
    import agents

    root = Path(agents.__file__).resolve().parent.parent
    rev = subprocess.run(
        ["git", "-C", str(root), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{root}" + (f" at {rev}" if rev else "")


def trial(name: str, db_kind: str, reps: int | None, scale: float = 1.0) -> dict[str, Any]:
    """One fresh process; also how busy the rest of the machine was meanwhile."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--db", db_kind]
    cmd += ["--time-scale", repr(scale)]
    if reps:
        cmd += ["--reps", str(reps)]
    ticks = os.sysconf("SC_CLK_TCK")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    b0, t0 = cpu_jiffies()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    b1, t1 = cpu_jiffies()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{name} trial failed:\n{out.stderr}")
    ours = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    others = max(0.0, (b1 - b0) / ticks - ours)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["other_cores"] = others / max(1e-9, (t1 - t0) / ticks / (os.cpu_count() or 1))
    return result


def fmt(value: float, unit: str) -> str:
    return f"{value:,.0f}" if unit == "us/step" else f"{value:.3f}"


def report(
    names: list[str],
    db_kind: str,
    trials: int,
    reps: int | None,
    idle: float,
    idle_wait: float,
    time_scale: str = "1",
) -> None:
    rows = []
    scale, floor_note = 1.0, ""
    if time_scale == "auto":
        # This machine's speed against the anchors' one, from the same floor they measured.
        wait_for_idle(idle, idle_wait)
        floors = [trial("floor", db_kind, reps)["median"] for _ in range(max(3, trials))]
        floor = statistics.median(floors)
        scale = max(1.0, floor / ANCHOR_FLOOR_US)
        floor_note = (
            f"floor here {floor:,.1f} µs/step (trials {', '.join(f'{f:.1f}' for f in floors)}) "
            f"against the anchors' {ANCHOR_FLOOR_US} µs: "
        )
    elif time_scale != "1":
        scale = float(time_scale)
    if scale != 1.0:
        print(
            f"time scale {scale:.2f} ({floor_note}model delays and ideals × {scale:.2f}; "
            f"µs/step results also shown ÷ {scale:.2f})",
            file=sys.stderr,
        )
    for name in names:
        s = SCENARIOS[name]
        got = []
        for _ in range(trials):
            # A trial during which other processes took CPU is repeated (up to twice); the
            # least disturbed one counts. On PostgreSQL the server's own CPU is "other", so no.
            tries = []
            for _ in range(3 if db_kind == "sqlite" else 1):
                wait_for_idle(idle, idle_wait)
                tries.append(trial(name, db_kind, reps, scale))
                if tries[-1]["other_cores"] <= max(0.25, 2 * idle):
                    break
            got.append(min(tries, key=lambda t: t["other_cores"]))
        med = statistics.median(g["median"] for g in got)
        # The bars are for SQLite; PostgreSQL is measured for information.
        limit = s.bar if db_kind == "sqlite" else None
        met = "" if limit is None else ("yes" if med <= limit else "**no**")
        if limit is not None and scale != 1.0 and s.unit == "us/step":
            met += f"; ÷ {scale:.2f}: " + ("yes" if med / scale <= limit else "**no**")
        bar = "" if limit is None else f"≤ {fmt(limit, s.unit)}"
        unit = "µs/step" if s.unit == "us/step" else "× ideal"
        if scale != 1.0 and s.unit == "us/step":
            unit += f" (÷ {scale:.2f} = {fmt(med / scale, s.unit)})"
        peak = statistics.median(g["rss_peak_kb"] for g in got) / 1024
        setup = statistics.median(g["rss_setup_kb"] for g in got) / 1024
        spread = ", ".join(fmt(g["median"], s.unit) for g in got)
        others = max(g["other_cores"] for g in got)
        cpu = statistics.median(g["cpu_us_per_step"] for g in got)
        g0 = got[0]
        rows.append(
            f"| {name} | {s.what} | {fmt(med, s.unit)} {unit} | {bar} | {met} | {spread} "
            f"| {cpu:,.0f} | {g0['commits_per_step']:.2f} / {g0['statements_per_step']:.2f} "
            f"| {peak:.0f} ({setup:.0f}) | {others:.2f} |"
        )
        print(
            f"{name}: {fmt(med, s.unit)} {unit}; trials {spread}; CPU {cpu:,.0f} µs/step; "
            f"other load {others:.2f} cores",
            file=sys.stderr,
        )
        print(f"  statements per step: {g0['by_verb_per_step']}", file=sys.stderr)
    scaled = ""
    if scale != 1.0:
        scaled = (
            f"; time scale {scale:.2f} ({floor_note}the model's delays and the ideal times "
            f"stretched by it, µs results also divided by it)"
        )
    print(
        f"\n{db_kind}, {trials} fresh-process trials each, median of trial medians; "
        f"engine from {code_version()}{scaled}\n\n"
        "| scenario | what | result | bar | met | trial medians | CPU µs per step "
        "| commits / statements per step | peak RSS MB (after setup) | other load, cores |\n"
        "|---|---|---:|---:|:-:|---|---:|---:|---:|---:|"
    )
    print("\n".join(rows))


# Rows of the breakdown, in print order; an indented row is part of the row above it.
TX_WAIT = (
    "transaction: open (SQLite: lock wait + BEGIN IMMEDIATE; PostgreSQL: pool checkout + pre-ping)"
)
TX_BEGIN = "  of which the driver's BEGIN (SQLite C; psycopg: connection checkout + BEGIN)"
TX_BODY = "transaction: body (build statements, execute them, read rows)"
TX_EXEC = "  of which session.execute (SQLAlchemy execution + driver)"
TX_DRIVER = "    of which the driver's execute (SQLite C / psycopg)"
TX_VALIDATE = "  of which Row.model_validate (SQLModel)"
TX_COMMIT = "transaction: COMMIT"
TX_DRIVER_COMMIT = "  of which the driver's COMMIT (SQLite C / psycopg)"
SCHEMA = "Tool.schema() (pydantic JSON schema, outside transactions)"
ROWS = (
    TX_WAIT,
    TX_BEGIN,
    TX_BODY,
    TX_EXEC,
    TX_DRIVER,
    TX_VALIDATE,
    TX_COMMIT,
    TX_DRIVER_COMMIT,
    SCHEMA,
)


class Breakdown:
    """Unprofiled attribution of wall time: thin timers around the database layers and hot spots.

    Layers, outermost first: a transaction (lock wait + BEGIN IMMEDIATE, body, COMMIT); inside
    the body each ``session.execute`` (SQLAlchemy: cache key, parameters, result); inside that
    the driver's own ``execute``/``commit``. Plus ``Tool.schema`` (pydantic JSON schema) and
    ``model_validate`` of rows. Each timer costs well under a microsecond.
    """

    def __init__(self, db: Database) -> None:
        from agents.tools import Tool
        from storage import database as dbmod
        from storage.models import Approval, Run, Step, ToolCall

        self.seconds: dict[str, float] = {}
        self.count: dict[str, int] = {}
        orig_tx = db.transaction
        clock = time.perf_counter

        @contextlib.asynccontextmanager
        async def transaction() -> AsyncIterator[Any]:
            t0 = clock()
            async with orig_tx() as session:
                t1 = clock()
                self.add(TX_WAIT, t1 - t0)
                yield session
                t2 = clock()
                self.add(TX_BODY, t2 - t1)
            self.add(TX_COMMIT, clock() - t2)

        db.transaction = transaction  # type: ignore[method-assign]
        for cls in (dbmod._SyncSession, dbmod._AsyncSession):
            self.timed(cls, "execute", lambda *_a: TX_EXEC, is_async=True)
        sync = db._sync_engine or (db._async_engine.sync_engine if db._async_engine else None)
        if sync is not None:
            dialect = sync.dialect

            def which(*a: Any) -> str:
                return TX_BEGIN if str(a[1]).startswith("BEGIN") else TX_DRIVER

            for meth in ("do_execute", "do_execute_no_params", "do_executemany"):
                self.timed(dialect, meth, which)
            self.timed(dialect, "do_commit", lambda *_a: TX_DRIVER_COMMIT)
        self.timed(Tool, "schema", lambda *_a: SCHEMA)
        for model in (Run, Step, ToolCall, Approval):
            self.timed(model, "model_validate", lambda *_a: TX_VALIDATE, bound=True)

    def add(self, key: str, seconds: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds
        self.count[key] = self.count.get(key, 0) + 1

    def timed(
        self,
        owner: Any,
        attr: str,
        key: Callable[..., str],
        *,
        is_async: bool = False,
        bound: bool = False,
    ) -> None:
        orig = getattr(owner, attr)
        add, clock = self.add, time.perf_counter
        wrapper: Callable[..., Any]

        if is_async:

            async def wrapper(*a: Any, **kw: Any) -> Any:
                t0 = clock()
                try:
                    return await orig(*a, **kw)
                finally:
                    add(key(*a), clock() - t0)

        else:

            def wrapper(*a: Any, **kw: Any) -> Any:
                t0 = clock()
                try:
                    return orig(*a, **kw)
                finally:
                    add(key(*a), clock() - t0)

        # A classmethod fetched from its class is already bound: keep it from binding again.
        setattr(owner, attr, staticmethod(wrapper) if bound else wrapper)


async def breakdown_child(name: str, db_kind: str, reps: int | None) -> dict[str, Any]:
    scenario = SCENARIOS[name]
    delay, rep, _ = workload(name)
    async with database(db_kind) as url:
        engine = await open_engine(settings_for(url), model=StandIn(delay), registry=registry())
        await rep(engine)
        timers = Breakdown(engine.svc.db)
        n = reps or scenario.reps
        t0 = time.perf_counter()
        for _ in range(n):
            await rep(engine)
        total = time.perf_counter() - t0
        await engine.close()
        await engine.svc.db.close()
    steps = steps_in(name) * n
    return {
        "total_us_per_step": total / steps * 1e6,
        "parts": {k: (v / steps * 1e6, timers.count[k] / steps) for k, v in timers.seconds.items()},
    }


def breakdown(name: str, db_kind: str, reps: int | None) -> None:
    got = asyncio.run(breakdown_child(name, db_kind, reps))
    total, parts = got["total_us_per_step"], got["parts"]
    print(f"\n{name} on {db_kind}: {total:,.0f} µs per step with the timers on\n")
    print("| where | µs per step | share | calls per step |\n|---|---:|---:|---:|")
    for key in ROWS:
        if key in parts:
            us, calls = parts[key]
            label = key.replace("  ", " ")  # keep the indent visible in markdown
            print(f"| {label} | {us:,.0f} | {us / total:.0%} | {calls:.2f} |")
    rest = total - sum(us for k, (us, _) in parts.items() if not k.startswith(" "))
    print(
        f"| everything else (engine, runtime, prompts, asyncio) | {rest:,.0f} | {rest / total:.0%} | |"
    )


def profile(name: str, db_kind: str, reps: int | None, top: int) -> None:
    prof = cProfile.Profile()

    async def main() -> None:
        scenario = SCENARIOS[name]
        delay, rep, _ = workload(name)
        async with database(db_kind) as url:
            engine = await open_engine(settings_for(url), model=StandIn(delay), registry=registry())
            await rep(engine)
            prof.enable()
            for _ in range(reps or scenario.reps):
                await rep(engine)
            prof.disable()
            await engine.close()
            await engine.svc.db.close()

    asyncio.run(main())
    stats = pstats.Stats(prof, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"any of: {', '.join(SCENARIOS)} (default: all)",
    )
    p.add_argument("--trials", type=int, default=5, help="fresh-process trials (default 5)")
    p.add_argument(
        "--reps", type=int, help="measured repetitions per trial (default: per scenario)"
    )
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--profile", action="store_true", help="cProfile the first scenario in process")
    p.add_argument(
        "--breakdown", action="store_true", help="time the layers of the first scenario, in process"
    )
    p.add_argument("--top", type=int, default=40, help="functions shown by --profile")
    p.add_argument(
        "--idle",
        type=float,
        default=0.15,
        help="before each trial wait until other processes use fewer cores than this (0.15)",
    )
    p.add_argument(
        "--idle-wait", type=float, default=300, help="longest wait for that, seconds (300)"
    )
    p.add_argument(
        "--time-scale",
        default="1",
        metavar="K",
        help="stretch the model's delays (and the ideals) by K, to see on a slow machine what a\n"
        "K times faster one would: 'auto' measures K as this machine's floor over the\n"
        f"anchors' {ANCHOR_FLOOR_US} µs (perf-anchors.md); default 1 (as measured)",
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        scale = float(args.time_scale)
        print(json.dumps(asyncio.run(child(args.child, args.db, args.reps, scale))))
        return
    names = args.scenarios or [n for n in SCENARIOS if args.db == "sqlite" or n != "floor"]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if args.profile:
        profile(names[0], args.db, args.reps, args.top)
        return
    if args.breakdown:
        breakdown(names[0], args.db, args.reps)
        return
    report(names, args.db, args.trials, args.reps, args.idle, args.idle_wait, args.time_scale)


if __name__ == "__main__":
    main()
