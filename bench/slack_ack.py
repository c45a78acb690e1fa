"""Slack acknowledgement latency of ``baton serve --http`` under load (results and method:
docs/benchmarks.md, "Slack acknowledgement latency").

    .venv/bin/python bench/slack_ack.py                 # 100 goals, then 50/s for 20 s
    .venv/bin/python bench/slack_ack.py --profile       # + py-spy of the server
    .venv/bin/python bench/slack_ack.py --goals 20 --seconds 5 --json out.json

Three processes, all on 127.0.0.1:

* the stand-ins (this file, ``--stand-ins``): FakeSlack (the Web API, recording every call
  with its arrival time) and ScriptedLLM answering every model request after a random
  100–800 ms; the planner always answers the same 10-step plan;
* ``baton serve --http`` (the real entry point; signed requests verified, SQLite in a
  temporary directory, the tests' network guard refusing anything but loopback);
* the load generator (this process): it sends signed ``/orchestrate`` requests exactly as
  Slack does, open loop on a fixed schedule (a slow answer never delays the next request),
  and times each HTTP response: that is the ack Slack waits for (3 s limit).

First ``--goals`` goals are started (each in its own channel, at ``--rate``/s), then
``--rate`` commands per second for ``--seconds`` s with the ``--mix`` of kinds: a new goal,
``status`` (ack, then an ephemeral reply through ``response_url``) and ``help`` (answered
in the ack itself). Then the runs are let finish and FakeSlack's call log gives the Web API
calls per run and the gaps between edits of each message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BOT_TOKEN = "xoxb-bench-0001"
PLANNER = "You are the planner"
STEPS = 10
CHANNEL_PREFIX = "C0BENCH"
BAR_P99_MS = 50.0
EDIT_INTERVAL_S = 1.0


# ---- the stand-ins (child process) ------------------------------------------------------------


def ten_step_plan() -> dict[str, Any]:
    """Four parallel lookups, two merges, two drafts, a review, a summary."""
    deps = {
        1: [],
        2: [],
        3: [],
        4: [],
        5: [1, 2],
        6: [3, 4],
        7: [5],
        8: [6],
        9: [7, 8],
        10: [9],
    }
    return {
        "steps": [
            {
                "id": f"s{i}",
                "title": f"Bench step {i}",
                "agent": "researcher",
                "instructions": f"Do part {i}.",
                "depends_on": [f"s{d}" for d in deps[i]],
                "needs_approval": False,
            }
            for i in range(1, STEPS + 1)
        ]
    }


def stand_ins(min_delay: float, max_delay: float, hooks: int, seed: int) -> None:
    """Serve FakeSlack and ScriptedLLM; answer commands on stdin until ``quit``."""
    from tests.support.llm_server import Reply, ScriptedLLM, request_text
    from tests.support.slack_api import FakeSlack
    from tests.support.slack_requests import CHANNEL_ID

    rng = random.Random(seed)
    plan = ten_step_plan()

    def respond(body: dict[str, Any]) -> Reply:
        delay = rng.uniform(min_delay, max_delay)
        if PLANNER in request_text(body):
            return Reply.json(plan, delay=delay)
        return Reply.text("A short, plausible result for this step.", delay=delay)

    with FakeSlack() as fake, ScriptedLLM() as llm:
        llm.responder(respond)
        urls = [fake.response_url(CHANNEL_ID) for _ in range(hooks)]
        print(
            json.dumps({"slack": fake.base_url, "llm": llm.base_url, "response_urls": urls}),
            flush=True,
        )
        for line in sys.stdin:
            command = line.split()
            if not command:
                continue
            if command[0] == "progress":
                finished = sum(
                    1
                    for c in fake.calls_to("chat.postMessage")
                    if str(c.args.get("text", "")).startswith("Run ")
                    and str(c.args.get("channel", "")).startswith(CHANNEL_PREFIX)
                )
                print(
                    json.dumps({"finished": finished, "model_calls": len(llm.requests)}),
                    flush=True,
                )
            elif command[0] == "dump":
                calls = [
                    {
                        "method": c.method,
                        "at": c.at,
                        "channel": c.args.get("channel"),
                        "ts": c.args.get("ts")
                        or (c.response.get("ts") if isinstance(c.response, dict) else None),
                        "ok": c.ok,
                        "error": c.error,
                        "text": str(c.args.get("text", ""))[:40],
                    }
                    for c in fake.calls
                ]
                Path(command[1]).write_text(json.dumps(calls))
                print(json.dumps({"calls": len(calls)}), flush=True)
            elif command[0] == "quit":
                break


# ---- the load generator (this process) --------------------------------------------------------


@dataclass
class Sample:
    kind: str
    phase: str
    target: float  # when it was due (perf_counter)
    sent: float
    done: float
    status: int
    body: str = ""
    error: str | None = None

    @property
    def latency_ms(self) -> float:
        return (self.done - self.sent) * 1000.0


@dataclass
class Load:
    url: str
    secret: str
    response_urls: list[str]
    samples: list[Sample] = field(default_factory=list)
    next_channel: int = 0
    hook: int = 0

    def body(self, kind: str) -> bytes:
        from tests.support.slack_requests import slash_command

        if kind == "goal":
            channel = f"{CHANNEL_PREFIX}{self.next_channel:04d}"
            self.next_channel += 1
            text = f"research account {channel} and draft a short brief"
            body, _ = slash_command(text, channel_id=channel, response_url=self._hook())
        elif kind == "status":
            body, _ = slash_command("status", response_url=self._hook())
        else:
            body, _ = slash_command("help", response_url=self._hook())
        return body

    def _hook(self) -> str:
        url = self.response_urls[self.hook % len(self.response_urls)]
        self.hook += 1
        return url

    async def one(self, session: Any, kind: str, phase: str, target: float) -> None:
        import aiohttp

        from tests.support.slack_requests import FORM, sign

        body = self.body(kind)
        headers = {"Content-Type": FORM, **sign(body, self.secret)}
        sent = time.perf_counter()
        try:
            async with session.post(self.url, data=body, headers=headers) as response:
                text = await response.text()
                done = time.perf_counter()
                self.samples.append(Sample(kind, phase, target, sent, done, response.status, text))
        except (aiohttp.ClientError, TimeoutError) as exc:
            done = time.perf_counter()
            self.samples.append(Sample(kind, phase, target, sent, done, 0, error=repr(exc)))

    async def burst(
        self, session: Any, kinds: Sequence[str], phase: str, rate: float
    ) -> list[asyncio.Task[None]]:
        """Send one request per kind on an open-loop schedule of ``rate`` per second."""
        start = time.perf_counter() + 0.05
        tasks = []
        for i, kind in enumerate(kinds):
            target = start + i / rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.one(session, kind, phase, target)))
        await asyncio.gather(*tasks)
        return tasks


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def summary(samples: Sequence[Sample]) -> dict[str, Any]:
    lat = [s.latency_ms for s in samples]
    return {
        "n": len(samples),
        "p50": percentile(lat, 50),
        "p95": percentile(lat, 95),
        "p99": percentile(lat, 99),
        "max": max(lat) if lat else math.nan,
        "non_200": sum(1 for s in samples if s.status != 200),
        "late_start_max_ms": max(((s.sent - s.target) * 1000 for s in samples), default=0.0),
    }


def timeline(samples: Sequence[Sample], bucket_s: float = 2.0) -> list[dict[str, Any]]:
    """p50/p99 of the acks in consecutive ``bucket_s`` windows (by send time)."""
    if not samples:
        return []
    t0 = min(s.sent for s in samples)
    buckets: dict[int, list[float]] = defaultdict(list)
    for s in samples:
        buckets[int((s.sent - t0) // bucket_s)].append(s.latency_ms)
    return [
        {
            "from_s": k * bucket_s,
            "n": len(v),
            "p50": percentile(v, 50),
            "p99": percentile(v, 99),
        }
        for k, v in sorted(buckets.items())
    ]


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
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def wait_for_idle(limit: float, timeout: float) -> float:
    """Wait (up to ``timeout`` s) until other processes use fewer than ``limit`` cores."""
    deadline = time.monotonic() + timeout
    said = False
    while True:
        b0, t0 = cpu_jiffies()
        time.sleep(1.0)
        b1, t1 = cpu_jiffies()
        busy = (b1 - b0) / max(1, t1 - t0) * (os.cpu_count() or 1)
        if busy < limit or time.monotonic() > deadline:
            return busy
        if not said:
            print(f"(waiting for an idle machine: {busy:.2f} cores busy)", file=sys.stderr)
            said = True
        time.sleep(2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def baton_env(slack_url: str, llm_url: str, db: Path, guard_log: Path) -> dict[str, str]:
    from tests.support.fixtures import GUARD_SITE, is_scrubbed
    from tests.support.netguard import LOG_ENV

    env = {k: v for k, v in os.environ.items() if not is_scrubbed(k)}
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_RUST": "false",
            "NO_PROXY": "127.0.0.1,localhost,::1",
            "no_proxy": "127.0.0.1,localhost,::1",
            "OPENAI_API_KEY": "sk-bench-not-real",
            "OPENAI_API_BASE": llm_url,
            "BATON_MODEL": "openai/gpt-4o-mini",
            "BATON_DATABASE_URL": f"sqlite:///{db}",
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": _secret(),
            "SLACK_API_BASE_URL": slack_url,
            "BATON_LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join([str(GUARD_SITE), str(REPO)]),
            LOG_ENV: str(guard_log),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("SLACK_APP_TOKEN", None)
    return env


def _secret() -> str:
    from tests.support.slack_requests import SIGNING_SECRET

    return SIGNING_SECRET


class StandIns:
    """The child process serving FakeSlack and ScriptedLLM."""

    def __init__(self, args: argparse.Namespace, hooks: int, seed: int) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--stand-ins",
                "--min-delay",
                str(args.min_delay),
                "--max-delay",
                str(args.max_delay),
                "--hooks",
                str(hooks),
                "--seed",
                str(seed),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        )
        self.info = self.read()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the stand-ins process died")
        data: dict[str, Any] = json.loads(line)
        return data

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("quit")
        with contextlib.suppress(Exception):
            self.proc.wait(10)
        if self.proc.poll() is None:
            self.proc.kill()


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("baton serve exited early")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError("baton serve did not listen in time")


def plan_kinds(n: int, mix: dict[str, float], seed: int) -> list[str]:
    """``n`` command kinds in the proportions of ``mix``, shuffled deterministically."""
    kinds: list[str] = []
    total = sum(mix.values())
    for kind, share in mix.items():
        kinds += [kind] * round(n * share / total)
    while len(kinds) < n:
        kinds.append("help")
    kinds = kinds[:n]
    random.Random(seed).shuffle(kinds)
    return kinds


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        kind, _, share = part.partition("=")
        if kind not in ("goal", "status", "help"):
            raise SystemExit(f"unknown command kind {kind!r} in --mix")
        mix[kind] = float(share)
    return mix


def per_run_calls(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Web API calls per run (each run has its own channel) and the gaps between edits."""
    by_channel: dict[str, Counter[str]] = defaultdict(Counter)
    finished: set[str] = set()
    for c in calls:
        channel = str(c.get("channel") or "")
        if not channel.startswith(CHANNEL_PREFIX):
            continue
        by_channel[channel][c["method"]] += 1
        if c["method"] == "chat.postMessage" and c["text"].startswith("Run "):
            finished.add(channel)
    runs = [by_channel[ch] for ch in sorted(finished)]
    methods = sorted({m for r in runs for m in r})
    per_method = {
        m: {
            "mean": statistics.fmean(r[m] for r in runs),
            "min": min(r[m] for r in runs),
            "max": max(r[m] for r in runs),
        }
        for m in methods
    }
    totals = [sum(r.values()) for r in runs]
    edits: dict[tuple[str, str], list[float]] = defaultdict(list)
    for c in calls:
        if c["method"] == "chat.update" and c["ok"]:
            edits[(str(c["channel"]), str(c["ts"]))].append(float(c["at"]))
    gaps = []
    for times in edits.values():
        times.sort()
        gaps += [b - a for a, b in itertools.pairwise(times)]
    return {
        "runs": len(runs),
        "per_method": per_method,
        "total_mean": statistics.fmean(totals) if totals else math.nan,
        "total_min": min(totals, default=0),
        "total_max": max(totals, default=0),
        "errors": Counter(
            f"{c['method']}:{c['error']}" for c in calls if not c["ok"] and c["error"]
        ),
        "messages_edited": len(edits),
        "edit_gaps": len(gaps),
        "min_edit_gap_s": min(gaps, default=math.nan),
        "gaps_under_1s": sum(1 for g in gaps if g < EDIT_INTERVAL_S),
        "gaps_under_0_9s": sum(1 for g in gaps if g < 0.9 * EDIT_INTERVAL_S),
        "max_edits_in_any_1s_window": max_in_window(edits.values(), EDIT_INTERVAL_S),
    }


def max_in_window(series: Any, window: float) -> int:
    """The most edits of one message that fall within any ``window`` seconds (closed)."""
    best = 0
    for times in series:
        j = 0
        for i, t in enumerate(times):
            while times[j] < t - window + 1e-9:
                j += 1
            best = max(best, i - j + 1)
    return best


async def drive(args: argparse.Namespace, url: str, response_urls: list[str], seed: int) -> Load:
    import aiohttp

    load = Load(url=url, secret=_secret(), response_urls=response_urls)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, trust_env=False
    ) as session:
        for _ in range(5):  # warm-up: auth.test, first imports, connection pool
            await load.one(session, "help", "warmup", time.perf_counter())
        await load.burst(session, ["goal"] * args.goals, "start", args.rate)
        kinds = plan_kinds(round(args.rate * args.seconds), parse_mix(args.mix), seed)
        await load.burst(session, kinds, "measured", args.rate)
    return load


def fmt(value: float) -> str:
    return f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--goals", type=int, default=100, help="goals started before measuring")
    p.add_argument("--rate", type=float, default=50.0, help="commands per second")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the measured window")
    p.add_argument(
        "--mix", default="goal=0.2,status=0.4,help=0.4", help="kinds of measured commands"
    )
    p.add_argument("--min-delay", type=float, default=0.1, help="model latency, low (s)")
    p.add_argument("--max-delay", type=float, default=0.8, help="model latency, high (s)")
    p.add_argument("--drain", type=float, default=600.0, help="max wait for runs to finish (s)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--profile",
        nargs="?",
        const="gil",
        choices=["gil", "idle"],
        help="py-spy the server while measuring: samples holding the GIL (who burns the "
        "interpreter), or every sample including idle and waiting threads",
    )
    p.add_argument("--py-spy", default="py-spy", help="py-spy executable for --profile")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--stand-ins", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--hooks", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--trials", type=int, default=1, help="fresh server and stand-ins each")
    p.add_argument(
        "--idle",
        type=float,
        default=0.3,
        help="before each trial, wait until other processes use fewer cores than this",
    )
    p.add_argument("--idle-wait", type=float, default=600, help="longest wait for that (s)")
    args = p.parse_args(argv)
    if args.stand_ins:
        stand_ins(args.min_delay, args.max_delay, args.hooks, args.seed)
        return 0
    # Bounded: at most this many requests, all to 127.0.0.1.
    total = args.goals + round(args.rate * args.seconds) + 5
    if total > 20_000:
        raise SystemExit("refusing to send more than 20,000 requests")
    results = []
    for n in range(args.trials):
        # A trial during which other processes took CPU is repeated (up to twice); the least
        # disturbed one counts. Only the first trial lets its runs finish (Web API counts).
        tries = []
        for attempt in range(3):
            label = f"trial {n + 1} of {args.trials}" + (f", retry {attempt}" if attempt else "")
            print(f"\n=== {label} ===", flush=True)
            busy = wait_for_idle(args.idle, args.idle_wait)
            tries.append(trial(args, total, args.seed + n, busy, drain=n == 0))
            if tries[-1]["other_cores_during_load"] <= max(0.25, 2 * args.idle):
                break
        results.append(min(tries, key=lambda r: r["other_cores_during_load"]))
    if args.trials > 1:
        print(f"\n=== median of {args.trials} trials (measured window) ===")
        for key in ("p50", "p95", "p99", "max"):
            values = [r["ack_ms"]["measured"][key] for r in results]
            print(
                f"  {key}: {statistics.median(values):.1f} ms "
                f"(trials: {', '.join(f'{v:.0f}' for v in values)})"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0 if all(r.get("bar_met") for r in results) else 1


def trial(
    args: argparse.Namespace, total: int, seed: int, busy_before: float, *, drain: bool
) -> dict[str, Any]:
    """One trial: fresh stand-ins, fresh ``baton serve``, fresh database."""
    info = machine()
    tmp = Path(tempfile.mkdtemp(prefix="baton-slack-ack-"))
    helpers = StandIns(args, hooks=total, seed=seed)
    port = free_port()
    guard_log = tmp / "netguard.log"
    env = baton_env(helpers.info["slack"], helpers.info["llm"], tmp / "baton.db", guard_log)
    out, err = (tmp / "serve.out").open("wb"), (tmp / "serve.err").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot",
            "serve",
            "--http",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        env=env,
        cwd=REPO,
    )
    profiler: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}}
    try:
        wait_listening(port, server)
        url = f"http://127.0.0.1:{port}/slack/events"
        if args.profile:
            spy = shutil.which(args.py_spy) or str(Path(sys.executable).with_name("py-spy"))
            profiler = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(server.pid),
                    "--duration",
                    str(int(args.seconds + args.goals / args.rate + 8)),
                    "--rate",
                    "250",
                    "--nonblocking",
                    *(["--gil"] if args.profile == "gil" else ["--idle"]),
                    "--format",
                    "raw",
                    "--output",
                    str(tmp / "profile.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        began = time.monotonic()
        cpu0 = {
            "baton": cpu_seconds(server.pid),
            "stand-ins": cpu_seconds(helpers.proc.pid),
            "generator": time.process_time(),
        }
        machine0 = cpu_jiffies()
        load = asyncio.run(drive(args, url, helpers.info["response_urls"], seed))
        measured_for = time.monotonic() - began
        cpu = {
            "baton": cpu_seconds(server.pid) - cpu0["baton"],
            "stand-ins": cpu_seconds(helpers.proc.pid) - cpu0["stand-ins"],
            "generator": time.process_time() - cpu0["generator"],
        }
        machine1 = cpu_jiffies()
        ticks = os.sysconf("SC_CLK_TCK")
        # Cores other processes kept busy during the load (the machine's busy time minus ours).
        others = max(0.0, (machine1[0] - machine0[0]) / ticks - sum(cpu.values()))
        other_cores = others / max(1e-9, measured_for)
        started_goals = sum(1 for s in load.samples if s.kind == "goal")
        drain_start = time.monotonic()
        progress: dict[str, Any] = {}
        while drain and time.monotonic() - drain_start < args.drain:
            progress = helpers.ask("progress")
            if progress["finished"] >= started_goals:
                break
            time.sleep(2.0)
        drained_in = time.monotonic() - drain_start
        dump = tmp / "calls.json"
        helpers.ask(f"dump {dump}")
        calls = json.loads(dump.read_text())
        if profiler is not None:
            profiler.wait(120)

        phases = {
            "measured": summary([s for s in load.samples if s.phase == "measured"]),
            "start (goals)": summary([s for s in load.samples if s.phase == "start"]),
        }
        for kind in ("goal", "status", "help"):
            picked = [s for s in load.samples if s.phase == "measured" and s.kind == kind]
            if picked:
                phases[f"measured: {kind}"] = summary(picked)
        result.update(
            {
                "ack_ms": phases,
                "timeline": timeline([s for s in load.samples if s.phase != "warmup"]),
                "web_api": per_run_calls(calls) if drain else None,
                "goals_started": started_goals,
                "runs_finished": progress.get("finished"),
                "model_calls": progress.get("model_calls"),
                "load_seconds": measured_for,
                "cpu_seconds_during_load": cpu,
                "other_cores_during_load": other_cores,
                "other_cores_before": busy_before,
                "drain_seconds": drained_in,
                "auth_test_calls": sum(1 for c in calls if c["method"] == "auth.test"),
                "response_url_posts": sum(1 for c in calls if c["method"] == "response_url"),
                "netguard_refusals": guard_log.read_text().splitlines()
                if guard_log.exists()
                else [],
                "bar_p99_ms": BAR_P99_MS,
                "bar_met": phases["measured"]["p99"] <= BAR_P99_MS,
                "tmp": str(tmp),
            }
        )
        report(result)
        if args.profile:
            print(f"\nprofile (py-spy raw, collapsed stacks): {tmp / 'profile.txt'}")
            if profiler is not None and profiler.stderr is not None:
                note = profiler.stderr.read().decode(errors="replace").strip()
                if note:
                    print(note[-2000:])
    finally:
        if profiler is not None and profiler.poll() is None:
            profiler.kill()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        out.close()
        err.close()
        helpers.close()
        tail = (tmp / "serve.err").read_text(errors="replace")[-3000:]
        if "Traceback" in tail:
            print("\nbaton serve stderr (tail):\n" + tail)
        if not (args.keep or args.profile):
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def report(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(f"machine: {m['nproc']} CPUs, {m['cpu']}, Python {m['python']}, {m['os']}, {m['date']}")
    print(
        f"goals started: {r['goals_started']}, finished: {r['runs_finished']} "
        f"(waited {r['drain_seconds']:.0f} s after the load), model calls: {r['model_calls']}"
    )
    cpu = r["cpu_seconds_during_load"]
    print(
        f"CPU during the {r['load_seconds']:.0f} s of load: "
        + ", ".join(f"{k} {v:.1f} s ({100 * v / r['load_seconds']:.0f}%)" for k, v in cpu.items())
    )
    print(
        f"other processes: {r['other_cores_before']:.2f} cores busy before, "
        f"{r['other_cores_during_load']:.2f} during the load"
    )
    print("\nack latency (HTTP response time, ms)")
    print(f"{'phase':<18} {'n':>5} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7} {'non-200':>8}")
    for phase, s in r["ack_ms"].items():
        print(
            f"{phase:<18} {s['n']:>5} {fmt(s['p50']):>7} {fmt(s['p95']):>7} "
            f"{fmt(s['p99']):>7} {fmt(s['max']):>7} {s['non_200']:>8}"
        )
    print(
        "timeline from the first goal (2 s buckets, p50/p99 ms): "
        + "  ".join(f"{b['from_s']:.0f}s {b['p50']:.0f}/{b['p99']:.0f}" for b in r["timeline"])
    )
    measured = r["ack_ms"]["measured"]
    print(
        f"bar: p99 ≤ {r['bar_p99_ms']:.0f} ms → {'met' if r['bar_met'] else 'MISSED'} "
        f"(generator's worst late start: {measured['late_start_max_ms']:.1f} ms)"
    )
    w = r["web_api"]
    if w is None:
        print("\n(runs not let finish in this trial: no Web API counts)")
        return
    print(f"\nWeb API calls per {STEPS}-step run (over {w['runs']} finished runs)")
    for method, s in w["per_method"].items():
        print(f"  {method:<20} mean {s['mean']:.2f}  min {s['min']}  max {s['max']}")
    print(f"  {'total':<20} mean {w['total_mean']:.2f}  min {w['total_min']}  max {w['total_max']}")
    print(
        f"  once per process: auth.test ×{r['auth_test_calls']}; "
        f"response_url posts (status replies): {r['response_url_posts']}"
    )
    if w["errors"]:
        print(f"  errors: {dict(w['errors'])}")
    print(
        f"\nedits: {w['messages_edited']} messages, {w['edit_gaps']} gaps between edits; "
        f"min gap {w['min_edit_gap_s']:.3f} s; gaps < 1 s: {w['gaps_under_1s']} "
        f"(< 0.9 s: {w['gaps_under_0_9s']}); most edits of one message in any 1 s: "
        f"{w['max_edits_in_any_1s_window']}"
    )
    if r["netguard_refusals"]:
        print(f"network guard refusals: {r['netguard_refusals'][:5]}")


if __name__ == "__main__":
    sys.exit(main())
