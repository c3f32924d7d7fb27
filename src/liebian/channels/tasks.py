"""Staff tasks: work a person does (send on personal WeChat, a 1:1 call, a follow-up).

Used by channels (kinds that need a person answer ``pending_staff`` with a task), automation
(a journey's "create a task" step) and communities. Interface::

    from liebian.channels.tasks import create_task, list_tasks, mark_done
    task = create_task(session, workspace_id, title="…", body="…", contact_id="ctc_…",
                       assignee="…", source="journey", dedupe_key="<run>:<step>")
    mark_done(session, workspace_id, task.id, done_by="…", spool=runtime.spool)

``dedupe_key`` makes creation exactly once (unique per workspace: a second call returns the
first task). Marking done a task that carries a send confirms that send (``sent``, event
``message_confirmed``). Only the caller's boundary commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from liebian.channels.models import Channel, ChannelSend, StaffTask
from liebian.events.spool import Spool
from liebian.kit.clock import utcnow
from liebian.kit.errors import Conflict, Invalid, NotFound
from liebian.kit.ids import new_id
from liebian.kit.pagination import paginate

STATUSES = ("open", "done", "cancelled")


def create_task(
    session: Session,
    workspace_id: str,
    *,
    title: str,
    body: str = "",
    kind: str = "manual",
    contact_id: str | None = None,
    assignee: str | None = None,
    source: str = "api",
    dedupe_key: str | None = None,
    send_id: str | None = None,
    due_at: datetime | None = None,
) -> StaffTask:
    title = (title or "").strip()
    if not title or len(title) > 200:
        raise Invalid("title is required (at most 200 characters)", details={"field": "title"})
    if dedupe_key is not None:
        existing = _by_dedupe(session, workspace_id, dedupe_key)
        if existing is not None:
            return existing
    task = StaffTask(
        id=new_id("tsk"), workspace_id=workspace_id, kind=kind[:32], title=title, body=body,
        contact_id=contact_id, assignee=assignee, source=source[:32], dedupe_key=dedupe_key,
        send_id=send_id, status="open", due_at=due_at, created_at=utcnow(),
    )  # fmt: skip
    try:
        with session.begin_nested():
            session.add(task)
    except IntegrityError:
        existing = _by_dedupe(session, workspace_id, dedupe_key) if dedupe_key else None
        if existing is None:
            raise
        return existing
    return task


def _by_dedupe(session: Session, workspace_id: str, key: str) -> StaffTask | None:
    return session.scalar(
        select(StaffTask).where(StaffTask.workspace_id == workspace_id, StaffTask.dedupe_key == key)
    )


def get_task(session: Session, workspace_id: str, task_id: str) -> StaffTask:
    task = session.get(StaffTask, task_id)
    if task is None or task.workspace_id != workspace_id:
        raise NotFound(f"no task {task_id!r} in this workspace", code="task_not_found")
    return task


def list_tasks(
    session: Session,
    workspace_id: str,
    *,
    status: str | None = "open",
    assignee: str | None = None,
    contact_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> list[StaffTask]:
    """Newest first; ``limit + 1`` rows so the caller can tell whether there is a next page."""
    if status is not None and status not in STATUSES:
        raise Invalid(f"status is one of {', '.join(STATUSES)}", details={"field": "status"})
    query = select(StaffTask).where(StaffTask.workspace_id == workspace_id)
    if status is not None:
        query = query.where(StaffTask.status == status)
    if assignee is not None:
        query = query.where(StaffTask.assignee == assignee)
    if contact_id is not None:
        query = query.where(StaffTask.contact_id == contact_id)
    return list(session.scalars(paginate(query, StaffTask.id, cursor, limit)))


def mark_done(
    session: Session,
    workspace_id: str,
    task_id: str,
    *,
    done_by: str | None = None,
    note: str | None = None,
    spool: Spool | None = None,
) -> StaffTask:
    """Close an open task (done twice is the same answer); confirm the send it carries."""
    task = get_task(session, workspace_id, task_id)
    if task.status == "done":
        return task
    if task.status != "open":
        raise Conflict(f"the task is {task.status}; only an open task can be done",
                       code="task_not_open")  # fmt: skip
    now = utcnow()
    task.status, task.done_at, task.done_by = "done", now, done_by
    task.note = (note or None) and note[:500]
    if task.send_id:
        record = session.get(ChannelSend, task.send_id)
        if record is not None and record.status == "pending_staff":
            record.status, record.sent_at, record.updated_at = "sent", now, now
            record.provider_message_id = f"staff:{done_by or 'unknown'}"[:200]
            channel = session.get(Channel, record.channel_id)
            from liebian.channels import events
            from liebian.contacts.models import Contact

            contact = session.get(Contact, record.contact_id) if record.contact_id else None
            external_id = contact.external_id if contact else None
            events.emit(session, spool, "message_confirmed", record,
                        channel.kind if channel else "staff", external_id, task_id=task.id)  # fmt: skip
            events.emit(session, spool, "message_sent", record,
                        channel.kind if channel else "staff", external_id, task_id=task.id)  # fmt: skip
    session.flush()
    return task


def cancel(session: Session, workspace_id: str, task_id: str) -> StaffTask:
    task = get_task(session, workspace_id, task_id)
    if task.status == "open":
        task.status = "cancelled"
        session.flush()
    return task
