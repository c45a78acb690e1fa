"""Engine events → the goal's Slack thread.

The root message of the thread is the run's live status card, rebuilt from the database and
edited in place at most once a second (events in between are coalesced). Step results,
approvals, handoffs, every refused call and flagged outbound call (``⚠️ refused: …``) and the
final summary are replies in the thread; a run that ended with refused calls says so on its
card and in its summary. Approval and handoff
messages are remembered (``slack_messages``) so a decision can replace their buttons.

Only runs whose origin is Slack (``origin["slack"]``) are rendered here.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from agents import notices
from agents.engine import Engine
from agents.events import (
    ApprovalDecided,
    ApprovalRequested,
    CallRefused,
    Event,
    HandoffAnswered,
    HandoffRequested,
    OutboundFlagged,
    RunFinished,
    RunWaiting,
    StepFinished,
)
from bot.cards import approval_card, handoff_card, run_card
from bot.poster import Poster, SlackAuthError, SlackChannelError
from bot.views import (
    approval_decided,
    approval_message,
    handoff_closed,
    handoff_message,
    run_summary,
    status_card,
    step_result,
)
from bot.views.cards import RunCard
from bot.views.results import flag_message, refusal_message
from storage.database import Session
from storage.models import Run
from storage.repositories import approvals, handoffs, runs, slack, steps

log = logging.getLogger(__name__)

#: Slack's own guidance: about one update per second per message.
CARD_INTERVAL_S = 1.0


class SlackRenderer:
    """Subscribes to the engine and keeps each Slack run's thread up to date."""

    def __init__(self, engine: Engine, poster: Poster, *, interval_s: float = CARD_INTERVAL_S):
        self.engine = engine
        self.db = engine.svc.db
        self.poster = poster
        self.interval_s = interval_s
        self._origins: dict[str, dict[str, Any] | None] = {}
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._last_edit: dict[str, float] = {}
        self._told: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._queues: dict[str, asyncio.Queue[Event]] = {}
        self._edit_locks: dict[str, asyncio.Lock] = {}
        self.closing = False

    # ---- subscription ----------------------------------------------------------------------
    async def on_event(self, event: Event) -> None:
        """Engine subscriber: queue the event for its run's thread and return at once.

        Slack calls (and pacing) happen in one worker per run, in event order, so a slow or
        rate-limited Slack never slows the engine down.
        """
        if self.closing:
            return
        origin = await self._origin(event.run_id)
        if origin is None:
            return
        queue = self._queues.get(event.run_id)
        if queue is None:
            queue = self._queues[event.run_id] = asyncio.Queue()
            task = asyncio.create_task(self._work(event.run_id, queue, origin))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        queue.put_nowait(event)

    async def _work(self, run_id: str, queue: asyncio.Queue[Event], origin: dict[str, Any]) -> None:
        if not origin.get("thread_ts"):
            await self._open_thread(run_id, origin)
        while True:
            event = await queue.get()
            await self._safely(event, origin)
            queue.task_done()
            if isinstance(event, RunFinished) and queue.empty():
                self._queues.pop(run_id, None)
                return

    async def drain(self) -> None:
        """Wait until every queued event is on Slack and every card edit is done."""
        for queue in list(self._queues.values()):
            await queue.join()
        await self.flush()

    async def _safely(self, event: Event, origin: dict[str, Any]) -> None:
        try:
            await self._render(event, origin)
        except SlackAuthError:
            pass
        except SlackChannelError as exc:
            await self._tell_requester(event.run_id, origin, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not render %s for run %s", event.kind, event.run_id)

    async def _render(self, event: Event, origin: dict[str, Any]) -> None:
        if not origin.get("thread_ts"):
            return
        channel, thread = str(origin["channel"]), str(origin["thread_ts"])
        self.touch(event.run_id)
        match event:
            case StepFinished():
                text, blocks = step_result(event.run_id, event.step_id, event.title, event.output)
                await self.poster.post(channel, text, blocks, thread)
            case ApprovalRequested():
                await self._post_approval(event.approval_id, origin)
            case ApprovalDecided():
                await self._refresh_approval(event.approval_id)
            case HandoffRequested() if event.handoff_id:
                await self._post_handoff(event.handoff_id, origin)
            case HandoffAnswered():
                await self._refresh_handoff(event.handoff_id)
            case RunWaiting():
                await self.reconcile(event.run_id)
            case CallRefused():
                line = notices.refusal_text(event.tool, event.target, event.reason)
                text, blocks = refusal_message(line)
                await self.poster.post(channel, text, blocks, thread)
            case OutboundFlagged():
                text, blocks = flag_message(notices.flags_text(event.tool, event.flags))
                await self.poster.post(channel, text, blocks, thread)
            case RunFinished():
                async with self.db.transaction() as session:
                    card = await _card(session, event.run_id)
                assert card is not None
                text, blocks = run_summary(card, event.output)
                await self.poster.post(channel, text, blocks, thread)
            case _:
                pass

    async def _origin(self, run_id: str) -> dict[str, Any] | None:
        if run_id not in self._origins:
            async with self.db.transaction() as session:
                run = await runs.get_run(session, run_id=run_id)
            origin = run.origin if run is not None else None
            self._origins[run_id] = origin if origin and origin.get("slack") else None
        return self._origins[run_id]

    async def _open_thread(self, run_id: str, origin: dict[str, Any]) -> None:
        """A run started without a thread (a scheduled firing): post its card first."""
        async with self.db.transaction() as session:
            run = await runs.get_run(session, run_id=run_id)
        if run is None:
            return
        text, blocks = status_card(run_card(run, []))
        try:
            ts = await self.poster.post(str(origin["channel"]), text, blocks)
        except (SlackChannelError, SlackAuthError) as exc:
            log.warning("could not open a thread for run %s: %s", run_id, exc)
            return
        origin["thread_ts"] = ts
        async with self.db.transaction() as session:
            await runs.update_run(session, run_id=run_id, values={"origin": origin})
            await slack.save_message(
                session,
                kind="card",
                ref_id=run_id,
                channel=str(origin["channel"]),
                ts=ts,
                now=time.time(),
                run_id=run_id,
                team_id=origin.get("team_id"),
            )

    # ---- the live card ----------------------------------------------------------------------
    def touch(self, run_id: str) -> None:
        """Schedule a card edit, coalescing everything that happens within the interval."""
        if run_id in self._pending or self.closing:
            return
        task = asyncio.create_task(self._edit_later(run_id))
        self._pending[run_id] = task
        task.add_done_callback(functools.partial(self._done_editing, run_id))

    def _done_editing(self, run_id: str, task: asyncio.Task[None]) -> None:
        if self._pending.get(run_id) is task:
            del self._pending[run_id]

    async def _edit_later(self, run_id: str) -> None:
        # One edit of a card at a time, and each at least the interval after the last one
        # finished (measured when Slack answered, so slow calls cannot bunch edits up).
        lock = self._edit_locks.setdefault(run_id, asyncio.Lock())
        async with lock:
            wait = self._last_edit.get(run_id, 0.0) + self.interval_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            # From here on a new event schedules another edit, after this one.
            self._pending.pop(run_id, None)
            try:
                await self.edit_card(run_id)
            except (SlackAuthError, SlackChannelError):
                pass  # already reported once, where it was first seen
            except Exception:
                log.exception("could not edit the card of run %s", run_id)
            finally:
                self._last_edit[run_id] = time.monotonic()

    async def edit_card(self, run_id: str) -> None:
        """Rebuild the card from storage and edit it in place."""
        origin = await self._origin(run_id)
        if origin is None:
            return
        async with self.db.transaction() as session:
            card = await _card(session, run_id)
        if card is None:
            return
        if not origin.get("thread_ts"):
            return
        text, blocks = status_card(card)
        await self.poster.update(str(origin["channel"]), str(origin["thread_ts"]), text, blocks)

    async def close(self) -> None:
        """Stop rendering: nothing new is scheduled, and what is pending is cancelled."""
        self.closing = True
        tasks = [*self._pending.values(), *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def flush(self) -> None:
        """Wait for scheduled card edits (shutdown, tests)."""
        while self._pending:
            await asyncio.gather(*list(self._pending.values()), return_exceptions=True)

    # ---- approvals and handoffs ---------------------------------------------------------------
    async def _post_approval(self, approval_id: str, origin: dict[str, Any]) -> None:
        async with self.db.transaction() as session:
            approval = await approvals.get(session, approval_id=approval_id)
            if approval is None or await slack.get_message(
                session, kind="approval", ref_id=approval_id
            ):
                return
            step = await steps.get_step(session, run_id=approval.run_id, step_id=approval.step_id)
        card = approval_card(approval, step.title if step else approval.step_id)
        text, blocks = (
            approval_message(card) if approval.status == "pending" else approval_decided(card)
        )
        ts = await self.poster.post(str(origin["channel"]), text, blocks, str(origin["thread_ts"]))
        async with self.db.transaction() as session:
            await slack.save_message(
                session,
                kind="approval",
                ref_id=approval_id,
                channel=str(origin["channel"]),
                ts=ts,
                now=time.time(),
                run_id=approval.run_id,
                team_id=origin.get("team_id"),
            )

    async def _refresh_approval(self, approval_id: str) -> None:
        async with self.db.transaction() as session:
            approval = await approvals.get(session, approval_id=approval_id)
            where = await slack.get_message(session, kind="approval", ref_id=approval_id)
            if approval is None or where is None:
                return
            step = await steps.get_step(session, run_id=approval.run_id, step_id=approval.step_id)
        text, blocks = approval_decided(approval_card(approval, step.title if step else ""))
        await self.poster.update(where.channel, where.ts, text, blocks)

    async def _post_handoff(self, handoff_id: str, origin: dict[str, Any]) -> None:
        async with self.db.transaction() as session:
            handoff = await handoffs.get(session, handoff_id=handoff_id)
            if handoff is None or await slack.get_message(
                session, kind="handoff", ref_id=handoff_id
            ):
                return
            step = await steps.get_step(session, run_id=handoff.run_id, step_id=handoff.step_id)
        card = handoff_card(handoff, step.title if step else handoff.step_id)
        text, blocks = handoff_message(card) if handoff.status == "open" else handoff_closed(card)
        ts = await self.poster.post(str(origin["channel"]), text, blocks, str(origin["thread_ts"]))
        async with self.db.transaction() as session:
            await slack.save_message(
                session,
                kind="handoff",
                ref_id=handoff_id,
                channel=str(origin["channel"]),
                ts=ts,
                now=time.time(),
                run_id=handoff.run_id,
                team_id=origin.get("team_id"),
            )

    async def _refresh_handoff(self, handoff_id: str) -> None:
        async with self.db.transaction() as session:
            handoff = await handoffs.get(session, handoff_id=handoff_id)
            where = await slack.get_message(session, kind="handoff", ref_id=handoff_id)
            if handoff is None or where is None:
                return
            step = await steps.get_step(session, run_id=handoff.run_id, step_id=handoff.step_id)
        text, blocks = handoff_closed(handoff_card(handoff, step.title if step else ""))
        await self.poster.update(where.channel, where.ts, text, blocks)

    async def reconcile(self, run_id: str) -> None:
        """Post any pending approval or open handoff that has no message yet (after a crash
        between committing it and posting it)."""
        origin = await self._origin(run_id)
        if origin is None:
            return
        async with self.db.transaction() as session:
            pending = await approvals.list_approvals(session, run_id=run_id, statuses=["pending"])
            open_ = await handoffs.list_handoffs(session, run_id=run_id, statuses=["open"])
        for a in pending:
            await self._post_approval(a.id, origin)
        for h in open_:
            await self._post_handoff(h.id, origin)

    # ---- trouble ----------------------------------------------------------------------------
    async def _tell_requester(
        self, run_id: str, origin: dict[str, Any], exc: SlackChannelError
    ) -> None:
        if run_id in self._told:
            return
        self._told.add(run_id)
        user = origin.get("user")
        if not user:
            return
        await self.poster.direct(str(user), channel_help(exc.error, str(origin["channel"])))

    async def stop_workspace(self, error: str) -> None:
        """The token is dead: cancel every open Slack run (nothing more can be shown)."""
        async with self.db.transaction() as session:
            open_runs = await runs.list_runs(
                session, limit=1000, statuses=["planning", "running", "waiting"]
            )
        for run in open_runs:
            if _is_slack(run):
                task = asyncio.create_task(self.engine.cancel(run.id, actor=f"baton:slack-{error}"))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)


def channel_help(error: str, channel: str) -> str:
    """What to do when Baton cannot post in a channel."""
    if error == "is_archived":
        return f"I can't post in <#{channel}>: it is archived. Start the goal in another channel."
    return (
        f"I can't post in <#{channel}> ({error}). Invite me with `/invite @Baton` in that "
        "channel, then try again."
    )


async def _card(session: Session, run_id: str) -> RunCard | None:
    """A run's card model from storage: its steps and every call a guard refused."""
    run = await runs.get_run(session, run_id=run_id)
    if run is None:
        return None
    rows = await steps.get_steps(session, run_id=run_id)
    refused = [n.text for n in await notices.for_run(session, run_id) if n.kind == "refused"]
    return run_card(run, rows, refused)


def _is_slack(run: Run) -> bool:
    return bool(run.origin and run.origin.get("slack"))
