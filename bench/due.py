"""Due work under load: how late follow-up messages are posted, and what an idle Baton costs
(results and method: docs/benchmarks.md, "Due work").

    .venv/bin/python bench/due.py                      # 10,000 over 20 s; SQLite and
                                                                  # PostgreSQL; 1 and 2 processes
    .venv/bin/python bench/due.py --db postgresql --procs 2
    .venv/bin/python bench/due.py --items 2000 --spread 10 --idle 20   # quicker
    .venv/bin/python bench/due.py --db postgresql --procs 2 --profile /tmp/prof

Each scenario (database × number of processes) gets a fresh database (a SQLite file in a
temporary directory, or a fresh PostgreSQL database made through ``$BATON_BENCH_PG_URL``,
default postgresql://postgres@127.0.0.1:5432/test, dropped afterwards), a fresh FakeSlack (the
tests' local Slack Web API, in a thread of this process, recording every call with its
arrival time) and ``--procs`` real ``baton serve --http`` processes on 127.0.0.1 (the tests'
network guard refuses anything but loopback). Once they are up and idle, ``--items``
``message`` follow-ups are written into ``due_items`` through
``storage.repositories.due.add_many`` (the rows ``agents.followups.schedule_message`` writes),
parked far in the future; then one UPDATE makes them due evenly over ``--spread`` seconds
starting ``--lead`` seconds later (so a slow write on a busy box cannot make them late), over
``--channels`` channels so that no channel gets more than one post every 2 s (Baton's
per-channel pacer is not what is measured).

Measured:

* lateness of each follow-up: FakeSlack's arrival time of its first accepted
  ``chat.postMessage`` minus its ``due_at`` (median, p99, max); duplicates and missing;
* work per process while loaded and per idle minute (``--idle`` seconds once everything is
  posted): due-work ticks and database transactions (counted inside each server by a
  ``sitecustomize`` the bench writes: it wraps ``DueWork.tick`` and ``Database.transaction``
  and dumps the counts to a file twice a second), CPU seconds (/proc), and on PostgreSQL the
  server's own count, ``pg_stat_database.xact_commit + xact_rollback`` of the bench database
  (``pg_stat_statements`` is not preloaded on this server).

Loops are bounded: a scenario stops waiting ``--lead + --spread + 60`` s after the first item
is due, or when nothing has been posted for 15 s (reported as STUCK).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

PG_ADMIN_URL = os.environ.get("BATON_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
STALL_S = 15.0
# Rows are written due at this far-off time (2096), then brought forward in one UPDATE: on a
# busy box writing 10,000 rows can take longer than the lead, and rows written after they
# fell due would measure the bench, not Baton.
PARKED_AT = 4.0e9

# Written into the servers' PYTHONPATH: instrumentation only, Baton's code is not changed.
SITE = """
import json, os, threading, time

from tests.support import netguard

netguard.install()  # the tests' network guard: loopback only

import agents.due as _due
import storage.database as _database

_counts = {"ticks": 0, "transactions": 0}
_tick = _due.DueWork.tick
_transaction = _database.Database.transaction


async def _counted_tick(self):
    _counts["ticks"] += 1
    return await _tick(self)


def _counted_transaction(self):
    _counts["transactions"] += 1
    return _transaction(self)


_due.DueWork.tick = _counted_tick
_database.Database.transaction = _counted_transaction


def _dump():
    path = os.environ["BATON_BENCH_COUNTS"]
    while True:
        with open(path + ".tmp", "w") as f:
            json.dump(_counts, f)
        os.replace(path + ".tmp", path)
        time.sleep(0.5)


threading.Thread(target=_dump, daemon=True).start()

if os.environ.get("BATON_BENCH_PROFILE"):
    import atexit, cProfile

    _profile = cProfile.Profile(time.process_time)  # CPU time: the box may be busy
    _profile.enable()
    atexit.register(lambda: _profile.dump_stats(os.environ["BATON_BENCH_PROFILE"]))
"""


# ---- machine -----------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "nproc": usable,
        "cpu": model,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# ---- databases ---------------------------------------------------------------------------------
@contextlib.contextmanager
def database(kind: str, tmp: Path) -> Iterator[tuple[str, str | None]]:
    """A fresh database URL (and the PostgreSQL database name, for its statistics)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}", None
        return
    import psycopg

    name = f"baton_bench_due_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}", name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_stat(name: str, expr: str = "xact_commit + xact_rollback") -> int:
    """A counter of ``pg_stat_database`` for database ``name`` (a fresh snapshot): by default
    the transactions committed or rolled back; ``sessions`` counts connections opened."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT {expr} FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
    return int(row[0]) if row else 0


def statuses(url: str) -> dict[str, int]:
    query = "SELECT status, count(*) FROM due_items GROUP BY 1"
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        try:
            rows = conn.execute(query).fetchall()
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(url) as pg:
            rows = pg.execute(query).fetchall()
    return {str(s): int(n) for s, n in rows}


async def migrate(url: str) -> None:
    from storage.database import Database

    db = await Database.open(url)
    await db.close()


async def insert(url: str, items: list[tuple[str, str, float]], now: float) -> float:
    """Write the follow-ups (ref, channel, due_at), 500 rows per statement and transaction
    (the rows ``schedule_message`` writes, through ``due.add_many``); returns seconds. Bulk,
    so that writing them is done well before the first falls due even on a busy box."""
    from agents.followups import MESSAGE
    from storage.database import Database
    from storage.repositories import due

    db = await Database.open(url, migrate=False)
    began = time.monotonic()
    try:
        for at in range(0, len(items), 500):
            async with db.transaction() as session:
                await due.add_many(
                    session,
                    items=[
                        {
                            "kind": MESSAGE,
                            "ref_id": ref,
                            "due_at": due_at,
                            "payload": {
                                "text": f"bench {ref}",
                                "channel": channel,
                                "thread_ts": None,
                                "requester": None,
                            },
                        }
                        for ref, channel, due_at in items[at : at + 500]
                    ],
                    now=now,
                )
    finally:
        await db.close()
    return time.monotonic() - began


def shift(url: str, seconds: float) -> None:
    """Bring every pending row ``seconds`` earlier, in one statement and transaction."""
    query = "UPDATE due_items SET due_at = due_at - {} WHERE status = 'pending'"
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        try:
            with conn:
                conn.execute(query.format("?"), (seconds,))
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(url) as pg:
            pg.execute(query.format("%s"), (seconds,))


# ---- servers -----------------------------------------------------------------------------------
def server_env(
    url: str, slack_url: str, token: str, tmp: Path, args: argparse.Namespace
) -> dict[str, str]:
    """The environment of one ``baton serve``; its counters go to ``tmp/<token>.json``."""
    from tests.support.fixtures import is_scrubbed
    from tests.support.netguard import LOG_ENV
    from tests.support.slack_requests import SIGNING_SECRET

    site = tmp / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITE)
    env = {k: v for k, v in os.environ.items() if not is_scrubbed(k)}
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_RUST": "false",
            "NO_PROXY": "127.0.0.1,localhost,::1",
            "no_proxy": "127.0.0.1,localhost,::1",
            "OPENAI_API_KEY": "sk-bench-not-real",
            "OPENAI_API_BASE": "http://127.0.0.1:9/v1",  # never called: no goal is started
            "BATON_MODEL": "openai/gpt-4o-mini",
            "BATON_DATABASE_URL": url,
            "BATON_LOG_LEVEL": "WARNING",
            "BATON_BENCH_COUNTS": str(tmp / f"{token}.json"),
            "SLACK_BOT_TOKEN": token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_BASE_URL": slack_url,
            "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]),
            LOG_ENV: str(tmp / "netguard.log"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        env["BATON_BENCH_PROFILE"] = str(args.profile.resolve() / f"{token}.pstats")
    env.pop("SLACK_APP_TOKEN", None)
    return env


def counts(server: Any) -> dict[str, float]:
    """The server's tick and transaction counters (as of its last dump, ≤ 0.5 s old) and CPU."""
    try:
        found = dict(json.loads(Path(server.env["BATON_BENCH_COUNTS"]).read_text()))
    except (OSError, ValueError):
        found = {"ticks": 0, "transactions": 0}
    found["cpu_s"] = cpu_seconds(server.popen.pid) if server.popen else math.nan
    return found


def deltas(before: list[dict[str, float]], after: list[dict[str, float]], per: float) -> dict:
    return {
        key: [round((a[key] - b[key]) * per, 2) for b, a in zip(before, after, strict=True)]
        for key in ("ticks", "transactions", "cpu_s")
    }


# ---- one scenario ------------------------------------------------------------------------------
def scenario(kind: str, procs: int, args: argparse.Namespace) -> dict[str, Any]:
    from tests.support.baton_server import BatonServer
    from tests.support.slack_api import FakeSlack

    result: dict[str, Any] = {"db": kind, "procs": procs, "items": args.items}
    with (
        tempfile.TemporaryDirectory(prefix="baton-bench-due-") as tmp_name,
        FakeSlack() as fake,
    ):
        tmp = Path(tmp_name)
        with database(kind, tmp) as (url, pg_name):
            asyncio.run(migrate(url))
            servers = [
                BatonServer(server_env(url, fake.base_url, f"xoxb-bench-{i}", tmp, args))
                for i in range(procs)
            ]
            try:
                for s in servers:
                    s.start(wait=False)
                for s in servers:
                    s.wait_ready(120)
                time.sleep(6)  # start-up ticks done: idle
                offsets = [
                    (f"{i:06d}", f"C0B{i % args.channels:05d}", args.spread * i / args.items)
                    for i in range(args.items)
                ]
                before = [counts(s) for s in servers]
                bench_cpu = time.process_time()  # mostly FakeSlack's thread
                sessions = pg_stat(pg_name, "sessions") if pg_name else 0
                parked = [(ref, channel, PARKED_AT + off) for ref, channel, off in offsets]
                result["insert_s"] = round(asyncio.run(insert(url, parked, time.time())), 2)
                start = time.time() + args.lead
                shift(url, PARKED_AT - start)
                items = [(ref, channel, start + off) for ref, channel, off in offsets]
                result["inserted_before_first_due_s"] = round(start - time.time(), 2)
                result.update(wait_posted(fake, url, args, start))
                result["load"] = deltas(before, [counts(s) for s in servers], 1.0)
                result["load"]["fakeslack_cpu_s"] = round(time.process_time() - bench_cpu, 2)
                result["load"]["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
                if pg_name:  # PostgreSQL connections opened meanwhile (the bench's: 1)
                    result["load"]["pg_sessions"] = pg_stat(pg_name, "sessions") - sessions
                result.update(lateness(fake, items))
                time.sleep(15)  # the last ticks settle; PostgreSQL flushes idle stats ≤ 10 s late
                result.update(idle(servers, pg_name, args.idle))
                result["statuses"] = statuses(url)
                result["tracebacks"] = sum(s.output.count("Traceback") for s in servers)
                result["warnings"] = sum(s.output.count("WARNING") for s in servers)
                if args.dump:  # per follow-up (due_at, first post's arrival) and server logs
                    args.dump.mkdir(parents=True, exist_ok=True)
                    posts = first_posts(fake)
                    (args.dump / f"{kind}-{procs}-posts.json").write_text(
                        json.dumps([[ref, due_at, posts.get(ref)] for ref, _, due_at in items])
                    )
                    for i, s in enumerate(servers):
                        (args.dump / f"{kind}-{procs}-server{i}.log").write_text(s.output)
                result["locked"] = sum(s.output.count("database is locked") for s in servers)
            finally:
                for s in servers:
                    if s.popen is not None and s.alive:
                        os.kill(s.popen.pid, signal.SIGCONT)
                    s.stop()
    return result


def wait_posted(fake: Any, url: str, args: argparse.Namespace, start: float) -> dict[str, Any]:
    deadline = start + args.spread + 60
    last, moved = -1, time.monotonic()
    while True:
        time.sleep(1.0)
        posted = fake.count("chat.postMessage")
        if posted != last:
            last, moved = posted, time.monotonic()
        if posted >= args.items:
            return {"stuck": False}
        if time.time() > deadline or time.monotonic() - moved > STALL_S:
            return {"stuck": True, "stuck_at": posted, "stuck_statuses": statuses(url)}


def first_posts(fake: Any) -> dict[str, float]:
    """Each follow-up's first accepted post: its arrival at FakeSlack (wall clock)."""
    offset = time.time() - time.monotonic()  # FakeSlack records time.monotonic() on arrival
    first: dict[str, float] = {}
    for call in fake.calls_to("chat.postMessage"):
        if call.ok:
            first.setdefault(
                str(call.args.get("text", "")).removeprefix("bench "), call.at + offset
            )
    return first


def lateness(fake: Any, items: list[tuple[str, str, float]]) -> dict[str, Any]:
    first = first_posts(fake)
    seen: dict[str, int] = {}
    for call in fake.calls_to("chat.postMessage"):
        if call.ok:
            ref = str(call.args.get("text", "")).removeprefix("bench ")
            seen[ref] = seen.get(ref, 0) + 1
    late = [first[ref] - due_at for ref, _, due_at in items if ref in first]
    return {
        "posted": len(first),
        "duplicates": sum(n - 1 for n in seen.values()),
        "missing": len(items) - len(first),
        "late_p50_s": round(statistics.median(late), 3) if late else math.nan,
        "late_p99_s": round(percentile(late, 99), 3),
        "late_max_s": round(max(late), 3) if late else math.nan,
        "early": sum(1 for x in late if x < 0),
    }


def idle(servers: list[Any], pg_name: str | None, seconds: float) -> dict[str, Any]:
    before = [counts(s) for s in servers]
    x0 = pg_stat(pg_name) if pg_name else 0
    began = time.monotonic()
    time.sleep(seconds)
    per_min = 60 / (time.monotonic() - began)
    out: dict[str, Any] = {"idle_per_min": deltas(before, [counts(s) for s in servers], per_min)}
    if pg_name:
        out["idle_pg_xacts_per_min"] = round((pg_stat(pg_name) - x0) * per_min, 1)
    return out


# ---- main --------------------------------------------------------------------------------------
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", nargs="+", default=["sqlite", "postgresql"])
    p.add_argument("--procs", nargs="+", type=int, default=[1, 2])
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--spread", type=float, default=20.0, help="seconds the items fall due over")
    p.add_argument("--lead", type=float, default=10.0, help="seconds before the first is due")
    p.add_argument("--channels", type=int, default=1000)
    p.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement")
    p.add_argument("--json", type=Path, help="write the results here too")
    p.add_argument(
        "--dump",
        type=Path,
        metavar="DIR",
        help="write each follow-up's due and post times, and the servers' logs, into DIR",
    )
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="cProfile each server for its whole life; DIR/<token>.pstats (see pstats)",
    )
    args = p.parse_args()
    if not 1 <= args.items <= 100_000 or not 1 <= max(args.procs) <= 8 or args.idle > 600:
        p.error("keep it bounded: 1..100000 items, 1..8 processes, idle ≤ 600 s")
    report: dict[str, Any] = {
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "results": [],
    }
    for kind in args.db:
        for procs in args.procs:
            print(f"… {kind}, {procs} process(es)", flush=True)
            r = scenario(kind, procs, args)
            report["results"].append(r)
            print(json.dumps(r), flush=True)
    print(f"\n{report['machine']}")
    print(
        "db          procs posted  dup miss  p50 s   p99 s   max s | idle/min: ticks  "
        "transactions  CPU s  (PG xacts)"
    )
    for r in report["results"]:
        i = r["idle_per_min"]
        print(
            f"{r['db']:<11} {r['procs']:>5} {r['posted']:>6} {r['duplicates']:>4} "
            f"{r['missing']:>4} {r['late_p50_s']:>6} {r['late_p99_s']:>7} {r['late_max_s']:>7}"
            f" | {i['ticks']} {i['transactions']} {i['cpu_s']} "
            f"({r.get('idle_pg_xacts_per_min', '-')})"
            + ("  STUCK" if r.get("stuck") else "")
            # Rows written after they fell due: lateness measures the bench, not Baton.
            + ("  INSERT-LATE" if r.get("inserted_before_first_due_s", 0) < 0 else "")
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
