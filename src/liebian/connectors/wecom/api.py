"""HTTP for the WeCom connector: ``/api/v1/connectors/wecom`` (keys) and the public
callback URL ``/api/v1/connectors/wecom/callback/{connection_id}`` that WeCom calls (signed
and encrypted by WeCom; no key, left out of the OpenAPI document)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.connectors.wecom import group_sends, service, tags
from liebian.connectors.wecom.schemas import (
    CallbackList,
    CallbackOut,
    CheckOut,
    ConnectionIn,
    ConnectionOut,
    GroupSendIn,
    MassSendIn,
    MassSendOut,
    ReceiptsOut,
    TagMapOut,
    TagSyncOut,
    TaskList,
    TaskOut,
    WayIn,
    WayList,
    WayOut,
    WelcomeIn,
    WelcomeOut,
)
from liebian.kit.errors import TooLarge

router = APIRouter(tags=["wecom"], prefix="/connectors/wecom")
public_router = APIRouter(tags=["wecom callbacks"], include_in_schema=False)

# WeCom's event messages are a few KB; anything far larger is not WeCom.
MAX_CALLBACK_BYTES = 256 * 1024


@router.put("", response_model=ConnectionOut)
def connect(
    body: ConnectionIn, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> ConnectionOut:
    """Connect the workspace's WeCom corp (or change it; omitted secrets are kept). Needs a
    second verification (issue 15)."""
    service.require(principal, "admin")
    principal.require_step_up("connecting WeCom")
    conn = service.connect(
        session, principal, runtime.cipher,
        service.ConnectionInput(
            corp_id=body.corp_id, agent_secret=body.agent_secret, token=body.token,
            encoding_aes_key=body.encoding_aes_key, agent_id=body.agent_id,
        ),
    )  # fmt: skip
    return ConnectionOut(**service.connection_out(conn, runtime.settings.base_url))


@router.get("", response_model=ConnectionOut)
def get(principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep) -> ConnectionOut:
    conn = service.get_connection(session, principal)
    return ConnectionOut(**service.connection_out(conn, runtime.settings.base_url))


@router.delete("", status_code=204, response_class=Response)
def disconnect(principal: PrincipalDep, session: SessionDep) -> Response:
    service.disconnect(session, principal)
    return Response(status_code=204)


@router.post("/check", response_model=CheckOut)
def check(principal: PrincipalDep, runtime: RuntimeDep) -> CheckOut:
    """Fetch an access token now: proves the corp id and agent secret."""
    return CheckOut(**service.check_credentials(runtime, principal))


def _way_out(way: object) -> WayOut:
    return WayOut.model_validate(way, from_attributes=True)


@router.post("/ways", status_code=201, response_model=WayOut)
def create_way(body: WayIn, principal: PrincipalDep, runtime: RuntimeDep) -> WayOut:
    """A 联系我 or 加入群聊 way whose ``state`` comes back in the add/join callback."""
    way = service.create_way(
        runtime, principal, kind=body.kind, state=body.state, targets=body.targets,
        channel=body.channel, remark=body.remark, welcome_text=body.welcome_text,
    )  # fmt: skip
    return _way_out(way)


@router.get("/ways", response_model=WayList)
def list_ways(principal: PrincipalDep, session: SessionDep) -> WayList:
    return WayList(items=[_way_out(w) for w in service.list_ways(session, principal)])


@router.get("/callbacks", response_model=CallbackList)
def list_callbacks(principal: PrincipalDep, session: SessionDep, limit: int = 50) -> CallbackList:
    """The callbacks received lately (newest first): event, change type, who."""
    return CallbackList(
        items=[CallbackOut(**c) for c in service.recent_callbacks(session, principal, limit)]
    )


@router.post("/welcome", response_model=WelcomeOut)
def welcome(body: WelcomeIn, principal: PrincipalDep, runtime: RuntimeDep) -> WelcomeOut:
    """Send the welcome message for an add callback's welcome_code (20 s window, once)."""
    service.require(principal, "use")
    outcome = service.send_welcome_msg(
        runtime, principal.workspace_id, body.welcome_code, body.text
    )
    return WelcomeOut(**dataclasses.asdict(outcome))


@router.post("/mass-sends", response_model=MassSendOut)
def mass_send(body: MassSendIn, principal: PrincipalDep, runtime: RuntimeDep) -> MassSendOut:
    """A 企业群发 task that a staff member confirms in WeCom; customers at WeCom's monthly
    cap are left out (``over_cap``)."""
    service.require(principal, "use")
    outcome = service.add_msg_template(
        runtime, principal.workspace_id, idempotency_key=body.idempotency_key,
        external_userids=body.external_userids, text=body.text, sender=body.sender,
    )  # fmt: skip
    return MassSendOut(**dataclasses.asdict(outcome))


def task_out(row: object) -> TaskOut:
    return TaskOut.model_validate(dataclasses.asdict(group_sends.view(row)))  # type: ignore[arg-type]


@router.post("/group-sends", response_model=TaskOut)
def group_send(body: GroupSendIn, principal: PrincipalDep, runtime: RuntimeDep) -> TaskOut:
    """A 企业群发 to customer groups (chat_type group): ``sender`` — the groups' owner —
    confirms it in the WeCom app. Groups at WeCom's monthly cap are left out (``over_cap``);
    the same ``idempotency_key`` returns the recorded task and never makes a second one."""
    service.require(principal, "use")
    row = group_sends.add_group_msg_template(
        runtime, principal.workspace_id, idempotency_key=body.idempotency_key,
        sender=body.sender, chat_ids=body.chat_ids, text=body.text, source="api",
    )  # fmt: skip
    return task_out(row)


@router.get("/mass-sends", response_model=TaskList)
def list_mass_sends(principal: PrincipalDep, session: SessionDep, limit: int = 50) -> TaskList:
    """Recent mass sends (to customers and to customer groups), newest first, each with what
    WeCom last reported: pending the staff member's confirmation, sent, failed, over the cap."""
    rows = group_sends.recent(session, principal, limit)
    return TaskList(items=[task_out(r) for r in rows], monthly_cap=service.MONTHLY_CAP)


@router.get("/mass-sends/{send_id}", response_model=TaskOut)
def get_mass_send(send_id: str, principal: PrincipalDep, session: SessionDep) -> TaskOut:
    """A mass send (customers or groups) with what WeCom last reported per recipient:
    pending (the staff member has not confirmed), sent, failed (with the reason)."""
    return task_out(group_sends.get_task(session, principal, send_id))


@router.post("/mass-sends/{send_id}/refresh", response_model=TaskOut)
def refresh_mass_send(send_id: str, principal: PrincipalDep, runtime: RuntimeDep) -> TaskOut:
    """Ask WeCom now (get_groupmsg_task / get_groupmsg_send_result) instead of waiting for
    the scheduler's ``wecom_group_results`` pass."""
    service.require(principal, "use")
    with runtime.read_sessions() as session:  # no request transaction held across the call
        group_sends.get_task(session, principal, send_id)
    return task_out(group_sends.refresh(runtime, principal.workspace_id, send_id))


@router.get("/receipts", response_model=ReceiptsOut)
def receipts(
    principal: PrincipalDep,
    session: SessionDep,
    external_userid: Annotated[list[str], Query(min_length=1, max_length=200)],
) -> ReceiptsOut:
    """Mass messages each customer received this month, and what is left under the cap."""
    return ReceiptsOut(**service.monthly_receipts(session, principal, external_userid))


@router.post("/tags/sync", response_model=TagSyncOut)
def sync_tags(principal: PrincipalDep, runtime: RuntimeDep) -> TagSyncOut:
    """Read WeCom's corp tags and mirror them as liebian tags (tagging a contact with a
    mirrored tag is then pushed to WeCom by the scheduler's ``wecom_tags`` job)."""
    return TagSyncOut(**tags.sync_corp_tags(runtime, principal))


@router.get("/tags", response_model=TagMapOut)
def tag_map(principal: PrincipalDep, runtime: RuntimeDep) -> TagMapOut:
    return TagMapOut.model_validate({"items": tags.tag_map(runtime, principal)})


# -- the callback URL WeCom calls ----------------------------------------------------------


@public_router.get("/connectors/wecom/callback/{connection_id}", response_class=PlainTextResponse)
def verify_url(
    connection_id: str,
    runtime: RuntimeDep,
    msg_signature: Annotated[str, Query(max_length=128)],
    timestamp: Annotated[str, Query(max_length=20)],
    nonce: Annotated[str, Query(max_length=128)],
    echostr: Annotated[str, Query(max_length=1024)],
) -> PlainTextResponse:
    plain = service.verify_callback_url(
        runtime, connection_id, msg_signature=msg_signature, timestamp=timestamp, nonce=nonce,
        echostr=echostr,
    )  # fmt: skip
    return PlainTextResponse(plain)


@public_router.post("/connectors/wecom/callback/{connection_id}", response_class=PlainTextResponse)
async def receive(
    connection_id: str,
    request: Request,
    runtime: RuntimeDep,
    msg_signature: Annotated[str, Query(max_length=128)],
    timestamp: Annotated[str, Query(max_length=20)],
    nonce: Annotated[str, Query(max_length=128)],
) -> PlainTextResponse:
    body = await request.body()
    if len(body) > MAX_CALLBACK_BYTES:
        raise TooLarge("a WeCom callback is at most 256 KB")
    await run_in_threadpool(
        service.receive_callback, runtime, connection_id, body,
        msg_signature=msg_signature, timestamp=timestamp, nonce=nonce,
    )  # fmt: skip
    # WeCom wants a 200 within 5 s; an empty body means "no passive reply".
    return PlainTextResponse("")
