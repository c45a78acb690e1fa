"""The ``baton`` command line.

Only argparse is imported at module level: ``baton --help`` must answer at once, and litellm
alone takes seconds to import. Each command imports what it needs.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.engine import Engine
    from agents.tools import Tool
    from bot.console import Console

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WAITING = 0, 1, 2, 3
#: A follow-up due within this many seconds is waited for in the terminal.
SHORT_WAIT_S = 300.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="baton",
        description="Baton: plan a goal into steps, run them with agents, ask people at the "
        "checkpoints that matter. State lives in BATON_DATABASE_URL (default ./baton.db).",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a goal (planned by the model) or a playbook")
    run.add_argument("goal", nargs="?", help="what you want done, in plain words")
    run.add_argument("--playbook", metavar="FILE", help="run this playbook (YAML) instead")
    run.add_argument(
        "--input", "-i", action="append", default=[], metavar="KEY=VALUE", help="playbook input"
    )
    _approval_flag(run)

    sub.add_parser("runs", help="list recent runs").add_argument("--limit", type=int, default=20)

    show = sub.add_parser("show", help="show one run: steps, outputs, approvals, tool calls")
    show.add_argument("run_id")

    resume = sub.add_parser("resume", help="continue unfinished runs (all, or one)")
    resume.add_argument("run_id", nargs="?")
    _approval_flag(resume)

    sub.add_parser("approvals", help="list pending approvals and open handoffs")

    approve = sub.add_parser("approve", help="approve a pending action, then continue its run")
    approve.add_argument("approval_id")
    approve.add_argument("--arguments", metavar="JSON", help="approve with these arguments")
    approve.add_argument("--draft", metavar="TEXT", help="approve with this text instead")
    approve.add_argument(
        "--send-anyway",
        action="store_true",
        help="send a flagged action as it is, despite its flags (audited; "
        "BATON_GROUNDING_OVERRIDE=never forbids it)",
    )
    approve.add_argument("--no-continue", action="store_true", help="record only")

    reject = sub.add_parser("reject", help="reject a pending action, then continue its run")
    reject.add_argument("approval_id")
    reject.add_argument("--reason", help="why (the agent sees it)")
    reject.add_argument(
        "--send-back",
        action="store_true",
        help="send a flagged action back to the writer with its flags as the reason",
    )
    reject.add_argument("--no-continue", action="store_true", help="record only")

    answer = sub.add_parser("answer", help="answer a handoff; it becomes the step's result")
    answer.add_argument("handoff_id")
    answer.add_argument("text", help="the step's result (use - to read stdin)")
    answer.add_argument("--no-continue", action="store_true", help="record only")

    cancel = sub.add_parser("cancel", help="cancel a run")
    cancel.add_argument("run_id")

    schedule = sub.add_parser(
        "schedule", help='run a goal or playbook on a schedule ("every monday 9am")'
    )
    schedule.add_argument(
        "when", help='"every monday 9am", "daily 17:30", "weekdays 8:45", or cron'
    )
    schedule.add_argument("goal", nargs="?", help="the goal (or use --playbook)")
    schedule.add_argument("--playbook", metavar="NAME", help="a playbook from BATON_PLAYBOOK_DIR")
    schedule.add_argument("--input", "-i", action="append", default=[], metavar="KEY=VALUE")
    schedule.add_argument("--tz", default=None, help="IANA time zone (default: this machine's)")
    sub.add_parser("schedules", help="list active schedules with their next firing")
    unschedule = sub.add_parser("unschedule", help="stop a schedule")
    unschedule.add_argument("schedule_id")

    sub.add_parser(
        "check", help="check the config folder (agents, playbooks, MCP servers) and settings"
    )

    serve = sub.add_parser(
        "serve",
        help="serve Slack (Socket Mode if SLACK_APP_TOKEN is set, else HTTP) and drive runs",
    )
    how = serve.add_mutually_exclusive_group()
    how.add_argument(
        "--socket",
        action="store_const",
        const="socket",
        dest="mode",
        help="Socket Mode (needs SLACK_APP_TOKEN)",
    )
    how.add_argument(
        "--http",
        action="store_const",
        const="http",
        dest="mode",
        help="HTTP on /slack/events (needs SLACK_SIGNING_SECRET)",
    )
    serve.add_argument("--port", type=int, default=None, help="HTTP port (default 3000)")
    serve.add_argument("--host", default="0.0.0.0", help="HTTP address to bind")
    serve.add_argument("--once", action="store_true", help="resume what is due, then exit")
    return p


def _approval_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--approvals",
        choices=["prompt", "exit", "wait"],
        default=None,
        help="when a person is needed: prompt here (default on a terminal), exit with code 3 "
        "and say what waits (default otherwise), or wait for a decision made elsewhere",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``baton`` console script."""
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return EXIT_USAGE
    _logging()
    try:
        return asyncio.run(_dispatch(args))
    except KeyboardInterrupt:
        sys.stderr.write("\nInterrupted. Unfinished runs continue with `baton resume`.\n")
        return 130


def _logging() -> None:
    import logging

    level = os.environ.get("BATON_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # litellm logs request details at INFO; they can include secrets in headers.
    logging.getLogger("LiteLLM").setLevel(max(logging.WARNING, logging.getLogger().level))
    from agents.secrets import install_log_redaction

    install_log_redaction()  # no secret in any log line or traceback (`baton serve` too)


async def _dispatch(args: argparse.Namespace) -> int:
    from agents.errors import BatonError
    from storage.database import DatabaseUnavailable

    try:
        handler = {
            "run": _cmd_run,
            "runs": _cmd_runs,
            "show": _cmd_show,
            "resume": _cmd_resume,
            "approvals": _cmd_approvals,
            "approve": _cmd_decide,
            "reject": _cmd_decide,
            "answer": _cmd_answer,
            "cancel": _cmd_cancel,
            "serve": _cmd_serve,
            "schedule": _cmd_schedule,
            "schedules": _cmd_schedules,
            "unschedule": _cmd_unschedule,
            "check": _cmd_check,
        }[args.command]
        return await handler(args)
    except BatonError as exc:
        sys.stderr.write(f"baton: {exc}\n")
        for problem in getattr(exc, "problems", []) or []:
            sys.stderr.write(f"  - {problem}\n")
        return EXIT_FAILED
    except DatabaseUnavailable as exc:
        sys.stderr.write(f"baton: the database is unavailable ({exc}); nothing was changed.\n")
        return EXIT_FAILED


def _mode(args: argparse.Namespace) -> str:
    if args.approvals:
        return str(args.approvals)
    return "prompt" if sys.stdin.isatty() else "exit"


async def _engine(*, check: set[str] | None = None, timer: bool = True) -> Engine:
    from agents.bootstrap import check_models, open_engine
    from agents.settings import Settings

    settings = Settings.from_env()
    if check is not None:
        check_models(check)
    engine = await open_engine(settings, extra_tools=_slack_tools())
    if timer:
        engine.start_timer()
    return engine


def _slack_tools() -> list[Tool]:
    """With SLACK_BOT_TOKEN set, agents may read and post in Slack from the terminal too."""
    if not os.environ.get("SLACK_BOT_TOKEN"):
        return []
    from bot.slack_tools import slack_tools_from_env

    return slack_tools_from_env()


def _requester() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


async def _cmd_run(args: argparse.Namespace) -> int:
    from agents.bootstrap import check_models, models_needed, open_engine
    from agents.config import configured_mcp_servers, configured_registry
    from agents.engine import clean_goal
    from agents.errors import PlaybookError
    from agents.playbook import bind, find_playbook, load_playbook
    from agents.settings import Settings
    from bot.console import Console

    settings = Settings.from_env()
    registry = configured_registry(settings, _slack_tools())
    # Everything that can be checked without the database or MCP servers, first.
    if args.playbook:
        if args.goal:
            raise PlaybookError("Give either a goal or --playbook, not both.")
        inputs = _inputs(args.input)
        path = Path(args.playbook)
        if not path.exists() and "/" not in args.playbook and not path.suffix:  # noqa: ASYNC240
            path = find_playbook(args.playbook, settings.playbook_dir)  # a name: the config's
        playbook = load_playbook(path)
    else:
        if args.goal is None:
            raise PlaybookError('Say what you want done: baton run "research Acme" (or --playbook)')
        if args.input:
            raise PlaybookError("--input goes with --playbook.")
        clean_goal(args.goal, settings.limits.max_goal_chars)  # before the slow model checks
    engine = await open_engine(
        settings, registry=registry, mcp_servers=configured_mcp_servers(settings)
    )
    try:
        # After the MCP servers are connected: a playbook may name their tools.
        if args.playbook:
            goal, plan = bind(playbook, inputs, registry, max_steps=settings.limits.max_steps)
            check_models(models_needed(settings, registry, plan))
        else:
            check_models(models_needed(settings, registry, None))
            plan = None
            goal = args.goal
    except BaseException:
        await engine.close()
        await engine.svc.db.close()
        raise
    engine.start_timer()
    console = Console()
    engine.bus.subscribe(console.on_event)
    try:
        if plan is None:
            run_id = await engine.start_goal(goal, requester=_requester(), origin={"cli": True})
        else:
            run_id = await engine.start_plan(
                goal,
                plan,
                playbook=playbook.name,
                inputs=inputs,
                requester=_requester(),
                origin={"cli": True},
            )
        return await _follow(engine, console, run_id, _mode(args))
    finally:
        await engine.close()
        await engine.svc.db.close()


def _inputs(pairs: Sequence[str]) -> dict[str, str]:
    from agents.errors import PlaybookError

    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise PlaybookError(f"--input takes KEY=VALUE, got {pair!r}")
        out[key.strip()] = value
    return out


async def _follow(engine: Engine, console: Console, run_id: str, mode: str) -> int:
    """Follow a run to its end, answering checkpoints as ``mode`` says."""
    from bot.console import LineReader, Prompter, summary_table, when
    from storage.repositories import approvals, handoffs, runs, steps

    prompter = None
    if mode == "prompt":
        prompter = Prompter(
            console,
            LineReader(asyncio.get_running_loop(), sys.stdin),
            override=engine.svc.settings.grounding_override == "confirm",
        )
    skipped: set[str] = set()
    while True:
        summary = await engine.wait(run_id)
        if summary.status in ("done", "failed", "cancelled", "rejected"):
            async with engine.svc.db.transaction() as session:
                run = await runs.get_run(session, run_id=run_id)
                rows = await steps.get_steps(session, run_id=run_id)
            assert run is not None
            console.write("")
            for line in summary_table(run, rows):
                console.write(line)
            return EXIT_OK if summary.status == "done" else EXIT_FAILED
        if summary.status == "interrupted":
            console.write(f"Run {run_id} was interrupted: {summary.error}")
            console.write(f"It continues where it stopped with: baton resume {run_id}")
            return EXIT_FAILED
        if summary.status in ("running", "planning"):
            # Another process holds the run: watch until it lets go.
            await asyncio.sleep(1.0)
            engine.drive(run_id)
            continue
        async with engine.svc.db.transaction() as session:
            pending = await approvals.list_approvals(session, run_id=run_id, statuses=["pending"])
            open_ = await handoffs.list_handoffs(session, run_id=run_id, statuses=["open"])
            rows = await steps.get_steps(session, run_id=run_id)
        if not pending and not open_:
            wakes = [s.not_before for s in rows if s.status == "scheduled" and s.not_before]
            if wakes and min(wakes) - time.time() <= SHORT_WAIT_S:
                await _wait_for_decision(engine, run_id)
                continue
            if wakes:
                console.write(
                    f"Run {run_id} continues at {when(min(wakes))} (a follow-up step). "
                    "`baton serve` runs it then; `baton show` tells where it stands."
                )
                return EXIT_WAITING
        todo = [a for a in pending if a.id not in skipped]
        todo_h = [h for h in open_ if h.id not in skipped]
        if mode == "wait":
            await _wait_for_decision(engine, run_id)
            continue
        if prompter is None or prompter.closed or (not todo and not todo_h):
            _say_waiting(console, run_id, pending, open_)
            return EXIT_WAITING
        for a in todo:
            if prompter.closed:
                break
            await _prompt_approval(engine, console, prompter, a, skipped)
        for h in todo_h:
            if prompter.closed:
                break
            text = await prompter.handoff(h)
            if text is None:
                skipped.add(h.id)
                continue
            await engine.answer_handoff(h.id, actor=_requester(), answer=text)


async def _prompt_approval(
    engine: Engine, console: Console, prompter: Any, approval: Any, skipped: set[str]
) -> None:
    from agents.approvals import DecisionRequest
    from agents.errors import ApprovalError

    while True:
        answer = await prompter.approval(approval)
        if answer is None:
            skipped.add(approval.id)
            return
        try:
            await engine.decide(
                DecisionRequest(
                    approval_id=approval.id,
                    actor=_requester(),
                    digest=approval.digest,
                    **answer,
                )
            )
            return
        except ApprovalError as exc:
            console.write(f"  {exc}")
            if "already" in str(exc) or "expired" in str(exc):
                return


async def _wait_for_decision(engine: Engine, run_id: str) -> None:
    from storage.repositories import runs

    while True:
        await asyncio.sleep(1.0)
        async with engine.svc.db.transaction() as session:
            run = await runs.get_run(session, run_id=run_id)
        if run is None or run.status != "waiting":
            engine.drive(run_id)
            return


def _say_waiting(
    console: Console, run_id: str, pending: Sequence[Any], open_: Sequence[Any]
) -> None:
    from agents.flags import is_flagged
    from bot.console import render_action

    console.write("")
    console.write(f"Run {run_id} is waiting for a person:")
    for a in pending:
        console.write(f"  approval {a.id} (step {a.step_id}):")
        for line in render_action(a):
            console.write(f"      {line}")
        if is_flagged(a.action):  # a plain approve does not send it (agents.approvals)
            console.write(
                f"    decide: baton reject {a.id} --send-back   |   "
                f"baton approve {a.id} --arguments '...'   |   "
                f"baton approve {a.id} --send-anyway"
            )
        else:
            console.write(
                f"    decide: baton approve {a.id}   |   baton reject {a.id} --reason '...'"
            )
    for h in open_:
        console.write(f"  handoff {h.id} (step {h.step_id}): {h.question}")
        console.write(f"    answer: baton answer {h.id} 'the result'")
    console.write(f"Then the run continues (or: baton resume {run_id}).")


async def _cmd_runs(args: argparse.Namespace) -> int:
    from agents.notices import REFUSED
    from bot.console import money, one_line
    from storage.database import Database
    from storage.repositories import audit, runs

    db = await Database.open(os.environ.get("BATON_DATABASE_URL"))
    try:
        async with db.transaction() as session:
            rows = await runs.list_runs(session, limit=args.limit)
            refused = await audit.count_by_run(
                session, run_ids=[r.id for r in rows], action=REFUSED
            )
    finally:
        await db.close()
    out = sys.stdout
    if not rows:
        out.write('No runs yet. Start one: baton run "research Acme"\n')
        return EXIT_OK
    out.write(f"{'run':<14} {'status':<10} {'calls':>5} {'cost':>9}  goal\n")
    for r in rows:
        n = refused.get(r.id, 0)
        warn = f"⚠ {n} refused · " if n else ""  # a run with refused calls never looks clean
        out.write(
            f"{r.id:<14} {r.status:<10} {r.model_calls:>5} {money(r.cost_usd):>9}  "
            f"{warn}{one_line(r.goal, 70)}\n"
        )
    return EXIT_OK


async def _resolve_run_id(db: Any, run_id: str) -> str:
    from agents.errors import NotFound
    from storage.repositories import runs

    async with db.transaction() as session:
        if await runs.get_run(session, run_id=run_id) is not None:
            return run_id
        found = await runs.find_run_ids(session, prefix=run_id)
    if len(found) == 1:
        return found[0]
    if found:
        raise NotFound(f"{run_id!r} matches several runs: {', '.join(found)}.")
    raise NotFound(f"There is no run {run_id!r}. List runs with: baton runs")


async def _cmd_show(args: argparse.Namespace) -> int:
    from agents import notices
    from bot.console import render_action, summary_table
    from storage.database import Database
    from storage.repositories import approvals, handoffs, runs, steps, tool_calls

    db = await Database.open(os.environ.get("BATON_DATABASE_URL"))
    try:
        run_id = await _resolve_run_id(db, args.run_id)
        async with db.transaction() as session:
            run = await runs.get_run(session, run_id=run_id)
            rows = await steps.get_steps(session, run_id=run_id)
            apps = await approvals.list_approvals(session, run_id=run_id)
            hands = await handoffs.list_handoffs(session, run_id=run_id)
            calls = await tool_calls.list_for_run(session, run_id=run_id)
            noticed = await notices.for_run(session, run_id)
    finally:
        await db.close()
    assert run is not None
    w = sys.stdout.write
    n_refused = notices.refused_count(noticed)
    refused = f" with {notices.plural(n_refused, 'refused call')}" if n_refused else ""
    w(f"Run {run.id} — {run.status}{refused}\nGoal: {run.goal}\n")
    if run.playbook:
        w(f"Playbook: {run.playbook} {run.inputs or {}}\n")
    if run.requester:
        w(f"Requested by: {run.requester}\n")
    if run.error:
        w(f"Reason: {run.error}\n")
    w("\n" + "\n".join(summary_table(run, rows)) + "\n")
    for s in rows:
        who = s.agent or f"tool {s.tool}"
        deps = f" after {', '.join(s.depends_on or [])}" if s.depends_on else ""
        w(f"\n## {s.step_id}: {s.title} ({who}{deps}) — {s.status}\n")
        if s.output:
            w(s.output.rstrip() + "\n")
        if s.error:
            w(f"error: {s.error}\n")
    if calls:
        w("\nTool calls:\n")
        for c in calls:
            w(f"  {c.step_id}: {c.tool} [{c.status}] key={c.idempotency_key}\n")
    for a in apps:
        by = f" by {a.decided_by}" if a.decided_by else ""
        w(f"\nApproval {a.id} ({a.kind}, step {a.step_id}): {a.status}{by}\n")
        if a.reason:
            w(f"  reason: {a.reason}\n")
        if a.status == "pending":
            w("\n".join(f"  {line}" for line in render_action(a)) + "\n")
    _show_notices(w, noticed)
    for h in hands:
        w(f"\nHandoff {h.id} ({h.kind}, step {h.step_id}): {h.status}\n")
        if h.question:
            w(f"  question: {h.question}\n")
        if h.answer:
            w(f"  answer by {h.answered_by}: {h.answer}\n")
    return EXIT_OK


def _show_notices(w: Any, noticed: Sequence[Any]) -> None:
    """Every refused call and flagged outbound call of a run (agents.notices), oldest first."""
    from bot.console import when

    for kind, heading in (("refused", "Refused calls"), ("flagged", "Flagged outbound calls")):
        found = [n for n in noticed if n.kind == kind]
        if found:
            w(f"\n{heading} ({len(found)}):\n")
        for n in found:
            guard = f" [{n.guard}]" if n.guard else ""
            w(f"  ⚠ {when(n.at)} step {n.step or '?'}: {kind}: {n.text}{guard}\n")


async def _cmd_resume(args: argparse.Namespace) -> int:
    from bot.console import Console

    engine = await _engine(check=_models_for_resume())
    console = Console()
    engine.bus.subscribe(console.on_event)
    try:
        if args.run_id:
            run_id = await _resolve_run_id(engine.svc.db, args.run_id)
            from storage.repositories import runs

            async with engine.svc.db.transaction() as session:
                await runs.set_status_if(
                    session, run_id=run_id, expected=["waiting"], values={"status": "running"}
                )
            engine.drive(run_id)
            return await _follow(engine, console, run_id, _mode(args))
        ids = await engine.resume_all()
        if not ids:
            console.write("Nothing to resume.")
            return EXIT_OK
        codes = [await _follow(engine, console, run_id, _mode(args)) for run_id in ids]
        return max(codes)
    finally:
        await engine.close()
        await engine.svc.db.close()


def _models_for_resume() -> set[str]:
    from agents.bootstrap import models_needed
    from agents.config import configured_registry
    from agents.settings import Settings

    settings = Settings.from_env()
    return models_needed(settings, configured_registry(settings, _slack_tools()), None)


async def _cmd_approvals(args: argparse.Namespace) -> int:
    from bot.console import render_action
    from storage.database import Database
    from storage.repositories import approvals, handoffs

    db = await Database.open(os.environ.get("BATON_DATABASE_URL"))
    try:
        async with db.transaction() as session:
            pending = await approvals.list_approvals(session, statuses=["pending"])
            open_ = await handoffs.list_handoffs(session, statuses=["open"])
    finally:
        await db.close()
    w = sys.stdout.write
    if not pending and not open_:
        w("Nothing is waiting for a person.\n")
    for a in pending:
        w(f"approval {a.id}  run {a.run_id}  step {a.step_id}\n")
        w("\n".join(f"    {line}" for line in render_action(a)) + "\n")
    for h in open_:
        w(f"handoff {h.id}  run {h.run_id}  step {h.step_id}: {h.question}\n")
    return EXIT_OK


async def _cmd_decide(args: argparse.Namespace) -> int:
    import json

    from agents.approvals import DecisionRequest, FlaggedAction
    from agents.errors import ApprovalError
    from bot.console import Console

    arguments = None
    if getattr(args, "arguments", None):
        try:
            arguments = json.loads(args.arguments)
        except json.JSONDecodeError as exc:
            raise ApprovalError(f"--arguments is not valid JSON ({exc.msg}).") from None
    reason = getattr(args, "reason", None)
    send_back = bool(getattr(args, "send_back", False))
    if args.command == "reject" and not send_back and not (reason or "").strip():
        raise ApprovalError("Say why with --reason '...' (the agent sees it), or use --send-back.")
    request = DecisionRequest(
        approval_id=args.approval_id,
        decision="approve" if args.command == "approve" else "reject",
        actor=_requester(),
        reason=reason,
        arguments=arguments,
        draft=getattr(args, "draft", None),
        override=bool(getattr(args, "send_anyway", False)),
    )
    engine = await _engine(check=None if args.no_continue else _models_for_resume())
    console = Console()
    engine.bus.subscribe(console.on_event)
    try:
        if send_back:
            request = await _send_back_request(engine, request)
        try:
            approval = await engine.decide(request)
        except FlaggedAction as exc:
            raise FlaggedAction(
                f"{exc} Here: `baton reject {args.approval_id} --send-back` sends it back, "
                "--arguments edits it, --send-anyway sends it despite the flags."
            ) from None
        if args.no_continue:
            await engine.close()
            return EXIT_OK
        return await _follow(engine, console, approval.run_id, "exit")
    finally:
        await engine.close()
        await engine.svc.db.close()


async def _send_back_request(engine: Engine, request: Any) -> Any:
    """``request`` as a send-back: its reason lists the approval's flags (and the note)."""
    from dataclasses import replace

    from agents.approvals import send_back_reason
    from agents.errors import NotFound
    from storage.repositories import approvals

    async with engine.svc.db.transaction() as session:
        approval = await approvals.get(session, approval_id=request.approval_id)
    if approval is None:
        raise NotFound(f"There is no approval {request.approval_id!r}.")
    return replace(request, reason=send_back_reason(approval.action, request.reason))


async def _cmd_answer(args: argparse.Namespace) -> int:
    from bot.console import Console

    text = sys.stdin.read() if args.text == "-" else args.text
    engine = await _engine(check=None if args.no_continue else _models_for_resume())
    console = Console()
    engine.bus.subscribe(console.on_event)
    try:
        handoff = await engine.answer_handoff(args.handoff_id, actor=_requester(), answer=text)
        if args.no_continue:
            await engine.close()
            return EXIT_OK
        return await _follow(engine, console, handoff.run_id, "exit")
    finally:
        await engine.close()
        await engine.svc.db.close()


async def _cmd_cancel(args: argparse.Namespace) -> int:
    engine = await _engine(timer=False)
    try:
        run_id = await _resolve_run_id(engine.svc.db, args.run_id)
        summary = await engine.cancel(run_id, actor=_requester())
    finally:
        await engine.close()
        await engine.svc.db.close()
    sys.stdout.write(f"Run {run_id}: {summary.status}\n")
    return EXIT_OK


async def _cmd_serve(args: argparse.Namespace) -> int:
    from agents.settings import Settings
    from bot.console import Console
    from bot.serve import serve
    from bot.settings import SlackSettings
    from bot.worker import serve_engine

    settings = Settings.from_env()
    slack = SlackSettings.from_env()
    engine = await _engine(check=_models_for_resume())
    console = Console()
    engine.bus.subscribe(console.on_event)
    try:
        if args.once:
            await serve_engine(engine, once=True)
        else:
            await serve(engine, settings, slack, mode=args.mode, host=args.host, port=args.port)
    finally:
        await engine.close()
        await engine.svc.db.close()
    return EXIT_OK


def _local_zone() -> str:
    """This machine's IANA zone name (TZ, /etc/timezone, or UTC)."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        return name
    try:
        link = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in link:
            return link.split("zoneinfo/", 1)[1]
    except OSError:
        pass
    return "UTC"


async def _cmd_schedule(args: argparse.Namespace) -> int:
    from agents.errors import PlaybookError
    from agents.recurring import create_schedule
    from bot.console import when

    if bool(args.goal) == bool(args.playbook):
        raise PlaybookError(
            'Give a goal or --playbook NAME: baton schedule "daily 9am" "research X"'
        )
    engine = await _engine(timer=False)
    try:
        found = await create_schedule(
            engine,
            spec=args.when,
            timezone=args.tz or _local_zone(),
            goal=args.goal,
            playbook=args.playbook,
            inputs=_inputs(args.input) if args.playbook else None,
            requester=_requester(),
            origin={"cli": True},
        )
    finally:
        await engine.close()
        await engine.svc.db.close()
    assert found.next_fire_at is not None
    sys.stdout.write(
        f"Schedule {found.id}: {found.spec} ({found.cron}, {found.timezone}); "
        f"next run {when(found.next_fire_at)}. `baton serve` must be running to fire it.\n"
    )
    return EXIT_OK


async def _cmd_schedules(args: argparse.Namespace) -> int:
    from bot.console import one_line, when
    from storage.database import Database
    from storage.repositories import schedules

    db = await Database.open(os.environ.get("BATON_DATABASE_URL"))
    try:
        async with db.transaction() as session:
            rows = await schedules.list_active(session)
    finally:
        await db.close()
    if not rows:
        sys.stdout.write('No schedules. Add one: baton schedule "every monday 9am" "..."\n')
    for r in rows:
        what = f"playbook {r.playbook}" if r.playbook else one_line(r.goal, 60)
        nxt = when(r.next_fire_at) if r.next_fire_at else "-"
        sys.stdout.write(f"{r.id}  {r.spec} ({r.timezone})  next {nxt}  {what}\n")
    return EXIT_OK


async def _cmd_unschedule(args: argparse.Namespace) -> int:
    from agents.recurring import remove_schedule

    engine = await _engine(timer=False)
    try:
        await remove_schedule(engine, args.schedule_id, actor=_requester())
    finally:
        await engine.close()
        await engine.svc.db.close()
    sys.stdout.write(f"Schedule {args.schedule_id} removed.\n")
    return EXIT_OK


async def _cmd_check(args: argparse.Namespace) -> int:
    from bot.check import check

    return check(sys.stdout)
