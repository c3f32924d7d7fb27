"""HTTP for channels (``/api/v1/channels``), guard settings, opt-outs and the staff task inbox.

Roles (one place): configuring channels and quiet hours needs ``admin`` (they hold secrets and
reach outside systems); sending, opt-outs and tasks need ``operator``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import select

from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.channels import config, tasks
from liebian.channels.models import ChannelSend, StaffTask
from liebian.channels.schemas import (
    ChannelCreate,
    ChannelCreated,
    ChannelList,
    ChannelOut,
    ChannelPatch,
    GuardSettingsIn,
    GuardSettingsOut,
    OptOutIn,
    OptOutList,
    OptOutOut,
    OutcomeOut,
    ReceiptIn,
    SendIn,
    SendPage,
    SendRecordOut,
    TaskDoneIn,
    TaskIn,
    TaskOut,
    TaskPage,
    TestSendIn,
)
from liebian.channels.service import SendRequest, record_receipt, send
from liebian.kit.auth import Principal, Role
from liebian.kit.errors import Invalid
from liebian.kit.ids import new_id
from liebian.kit.pagination import page_of, paginate

router = APIRouter(tags=["channels"])

CONFIGURE, USE = Role.admin, Role.operator


def _may(principal: Principal, role: Role) -> str:
    principal.require(role)
    return principal.workspace_id


def _contact_id(session: Any, workspace_id: str, ref: str | None, field: str) -> str | None:
    if ref is None:
        return None
    from liebian.contacts.service import find

    return find(session, workspace_id, ref, field).id


@router.post("/channels", status_code=201, response_model=ChannelCreated)
def create_channel(
    body: ChannelCreate, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> dict[str, Any]:
    ws = _may(principal, CONFIGURE)
    data = config.ChannelInput(
        kind=body.kind, name=body.name, config=body.config, secret=body.secret,
        cap_count=body.cap_count, cap_hours=body.cap_hours, monthly_cap=body.monthly_cap,
        active=body.active,
    )  # fmt: skip
    channel, generated = config.create_channel(session, runtime, ws, data)
    return {**config.channel_out(channel), "secret": generated}


@router.get("/channels", response_model=ChannelList)
def list_channels(principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    ws = _may(principal, USE)
    return {"items": [config.channel_out(c) for c in config.list_channels(session, ws)]}


@router.get("/channels/{channel_id}", response_model=ChannelOut)
def get_channel(channel_id: str, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    ws = _may(principal, USE)
    return config.channel_out(config.get_channel(session, ws, channel_id))


@router.patch("/channels/{channel_id}", response_model=ChannelOut)
def patch_channel(
    channel_id: str,
    body: ChannelPatch,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    ws = _may(principal, CONFIGURE)
    given = body.model_fields_set
    changes: dict[str, Any] = {
        k: getattr(body, k) for k in ("name", "config", "secret", "cap_hours", "active")
    }
    for nullable in ("cap_count", "monthly_cap"):
        if nullable in given:
            changes[nullable] = getattr(body, nullable)
    channel = config.update_channel(session, runtime, ws, channel_id, **changes)
    return config.channel_out(channel)


@router.post("/channels/{channel_id}/disable", response_model=ChannelOut)
def disable_channel(
    channel_id: str, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """Stop sending on a channel: sends answer ``suppressed`` / ``channel_disabled``."""
    ws = _may(principal, CONFIGURE)
    return config.channel_out(config.update_channel(session, runtime, ws, channel_id, active=False))


def _outcome(outcome: Any) -> dict[str, Any]:
    return {
        "send_id": outcome.send_id, "status": outcome.status, "reason": outcome.reason,
        "deferred_until": outcome.deferred_until,
        "provider_message_id": outcome.provider_message_id, "retryable": outcome.retryable,
        "error": outcome.error, "task_id": outcome.task_id, "replayed": outcome.replayed,
    }  # fmt: skip


@router.post("/channels/{channel_id}/send", response_model=OutcomeOut)
def send_message(
    channel_id: str, body: SendIn, principal: PrincipalDep, session: SessionDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:  # fmt: skip
    """Send one message; the same ``idempotency_key`` never sends twice (it answers the
    recorded outcome)."""
    ws = _may(principal, USE)
    contact_id = _contact_id(session, ws, body.contact_id, "contact_id")
    request = SendRequest(
        workspace_id=ws, channel_id=channel_id, contact_id=contact_id, content=body.content,
        idempotency_key=body.idempotency_key, source="api", category=body.category,
    )  # fmt: skip
    return _outcome(send(session, runtime, request))


TEST_CONTENT: dict[str, dict[str, Any]] = {
    "smtp": {"subject": "裂变测试邮件", "text": "这是一条来自裂变的测试消息。"},
    "webhook": {"text": "这是一条来自裂变的测试消息。", "test": True},
}


@router.post("/channels/{channel_id}/test", response_model=OutcomeOut)
def send_test(
    channel_id: str, body: TestSendIn, principal: PrincipalDep, session: SessionDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:  # fmt: skip
    """Send a test message now (transactional: quiet hours and caps do not hold it)."""
    ws = _may(principal, USE)
    channel = config.get_channel(session, ws, channel_id)
    content = body.content or TEST_CONTENT.get(
        channel.kind, {"text": "这是一条来自裂变的测试消息。"}
    )
    request = SendRequest(
        workspace_id=ws, channel_id=channel_id,
        contact_id=_contact_id(session, ws, body.contact_id, "contact_id"), content=content,
        idempotency_key=new_id("test"), source="test", category="transactional",
    )  # fmt: skip
    return _outcome(send(session, runtime, request))


@router.get("/channels/{channel_id}/sends", response_model=SendPage)
def list_sends(
    channel_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    ws = _may(principal, USE)
    config.get_channel(session, ws, channel_id)
    query = select(ChannelSend).where(
        ChannelSend.workspace_id == ws, ChannelSend.channel_id == channel_id
    )
    if status is not None:
        query = query.where(ChannelSend.status == status)
    rows, next_cursor = page_of(
        list(session.scalars(paginate(query, ChannelSend.id, cursor, limit))), limit
    )
    return {"items": [_record(r) for r in rows], "next_cursor": next_cursor}


@router.post("/channels/{channel_id}/receipts", response_model=SendRecordOut)
def post_receipt(
    channel_id: str, body: ReceiptIn, principal: PrincipalDep, session: SessionDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:  # fmt: skip
    """A delivery report for a sent message (forwarded by the brand's system): ``delivered``
    or ``bounced``; written as ``message_delivered`` / ``message_bounced`` events, once."""
    ws = _may(principal, USE)
    record = record_receipt(
        session, runtime, ws, channel_id, idempotency_key=body.idempotency_key,
        provider_message_id=body.provider_message_id, result=body.result, detail=body.detail,
    )  # fmt: skip
    return _record(record)


def _record(r: ChannelSend) -> dict[str, Any]:
    return {k: getattr(r, k) for k in SendRecordOut.model_fields}


@router.get("/channel-settings", response_model=GuardSettingsOut)
def get_guard_settings(principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    return config.guard_settings(session, _may(principal, USE))


@router.put("/channel-settings", response_model=GuardSettingsOut)
def put_guard_settings(
    body: GuardSettingsIn, principal: PrincipalDep, session: SessionDep
) -> dict[str, Any]:
    """Quiet hours (local time of the workspace's zone); start == end turns them off."""
    ws = _may(principal, CONFIGURE)
    return config.set_guard_settings(
        session, ws, enabled=body.quiet_enabled, start=body.quiet_start, end=body.quiet_end
    )


@router.post("/channel-opt-outs", status_code=201, response_model=OptOutList)
def add_opt_out(body: OptOutIn, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    """Stop marketing messages to a contact on a channel (``"*"``: on every channel)."""
    ws = _may(principal, USE)
    contact_id = _contact_id(session, ws, body.contact_id, "contact_id")
    assert contact_id is not None
    config.opt_out(session, ws, contact_id, body.channel_id, via="api")
    return _opt_outs(session, ws, contact_id)


@router.get("/channel-opt-outs", response_model=OptOutList)
def list_opt_outs(contact_id: str, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    ws = _may(principal, USE)
    resolved = _contact_id(session, ws, contact_id, "contact_id")
    assert resolved is not None
    return _opt_outs(session, ws, resolved)


@router.delete("/channel-opt-outs", status_code=204)
def remove_opt_out(
    contact_id: str, channel_id: str, principal: PrincipalDep, session: SessionDep
) -> Response:
    """Opt a contact back in (idempotent)."""
    ws = _may(principal, USE)
    resolved = _contact_id(session, ws, contact_id, "contact_id")
    assert resolved is not None
    config.opt_in(session, ws, resolved, channel_id)
    return Response(status_code=204)


def _opt_outs(session: Any, ws: str, contact_id: str) -> dict[str, Any]:
    rows = config.opt_outs(session, ws, contact_id)
    return {"items": [OptOutOut.model_validate(r, from_attributes=True) for r in rows]}


@router.post("/staff-tasks", status_code=201, response_model=TaskOut)
def create_task(body: TaskIn, principal: PrincipalDep, session: SessionDep) -> StaffTask:
    ws = _may(principal, USE)
    return tasks.create_task(
        session, ws, title=body.title, body=body.body, kind=body.kind,
        contact_id=_contact_id(session, ws, body.contact_id, "contact_id"),
        assignee=body.assignee, source="api", dedupe_key=body.dedupe_key, due_at=body.due_at,
    )  # fmt: skip


@router.get("/staff-tasks", response_model=TaskPage)
def list_tasks(
    principal: PrincipalDep,
    session: SessionDep,
    status: str = "open",
    assignee: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """The inbox: open tasks newest first (``status=all`` for every task)."""
    ws = _may(principal, USE)
    if status not in (*tasks.STATUSES, "all"):
        raise Invalid("status is open, done, cancelled or all", details={"field": "status"})
    rows = tasks.list_tasks(
        session, ws, status=None if status == "all" else status, assignee=assignee,
        cursor=cursor, limit=limit,
    )  # fmt: skip
    items, next_cursor = page_of(rows, limit)
    return {"items": items, "next_cursor": next_cursor}


@router.post("/staff-tasks/{task_id}/done", response_model=TaskOut)
def task_done(
    task_id: str, body: TaskDoneIn, principal: PrincipalDep, session: SessionDep,
    runtime: RuntimeDep,
) -> StaffTask:  # fmt: skip
    """Mark a task done; a message task confirms its send (``message_confirmed``)."""
    ws = _may(principal, USE)
    return tasks.mark_done(session, ws, task_id, done_by=body.done_by, note=body.note,
                           spool=runtime.spool)  # fmt: skip


@router.post("/staff-tasks/{task_id}/cancel", response_model=TaskOut)
def task_cancel(task_id: str, principal: PrincipalDep, session: SessionDep) -> StaffTask:
    return tasks.cancel(session, _may(principal, USE), task_id)
