"""HTTP for the participant sign-in settings (``/api/v1/participant-sign-in``): which methods
the campaign pages offer, per workspace or per campaign.

Roles (one place): changing them needs ``admin`` (the official account's AppSecret, the SMS
channel); reading needs ``operator``. The AppSecret is write-only.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from liebian.app.deps import PrincipalDep, RuntimeDep, SessionDep
from liebian.kit.auth import Principal, Role
from liebian.kit.errors import NotFound
from liebian.kit.schemas import error_responses
from liebian.participants import service
from liebian.participants.schemas import CampaignSignInIn, SignInOut, WorkspaceSignInIn

router = APIRouter(tags=["participant sign-in"])
CONFIGURE, READ = Role.admin, Role.operator


def _may(principal: Principal, role: Role) -> str:
    principal.require(role)
    return principal.workspace_id


def _campaign(session: Any, workspace_id: str, campaign_id: str) -> None:
    from sqlalchemy import select

    from liebian.campaigns.models import Campaign

    found = session.scalar(
        select(Campaign.id).where(Campaign.id == campaign_id, Campaign.workspace_id == workspace_id)
    )
    if found is None:
        raise NotFound(f"no campaign {campaign_id!r} in this workspace", code="campaign_not_found")


@router.get("/participant-sign-in", response_model=SignInOut, responses=error_responses(401, 403))
def get_workspace(principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    """The workspace's sign-in methods (default: only the brand's signed link, ``token``)."""
    return service.settings_out(session, _may(principal, READ))


@router.put(
    "/participant-sign-in", response_model=SignInOut, responses=error_responses(401, 403, 422)
)
def put_workspace(
    body: WorkspaceSignInIn, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> dict[str, Any]:
    """Choose the methods and set what they need: ``sms`` an sms channel, ``wechat`` the
    official account's AppID and AppSecret (WeChat web authorization)."""
    ws = _may(principal, CONFIGURE)
    service.put_workspace(session, runtime.cipher, ws, body)
    return service.settings_out(session, ws)


@router.get(
    "/campaigns/{campaign_id}/participant-sign-in", response_model=SignInOut,
    responses=error_responses(401, 403, 404),
)  # fmt: skip
def get_campaign(campaign_id: str, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    ws = _may(principal, READ)
    _campaign(session, ws, campaign_id)
    return service.settings_out(session, ws, campaign_id)


@router.put(
    "/campaigns/{campaign_id}/participant-sign-in", response_model=SignInOut,
    responses=error_responses(401, 403, 404, 422),
)  # fmt: skip
def put_campaign(
    campaign_id: str, body: CampaignSignInIn, principal: PrincipalDep, session: SessionDep
) -> dict[str, Any]:
    """The methods this campaign's pages offer, instead of the workspace's."""
    ws = _may(principal, CONFIGURE)
    _campaign(session, ws, campaign_id)
    service.put_campaign(session, ws, campaign_id, body)
    return service.settings_out(session, ws, campaign_id)


@router.delete(
    "/campaigns/{campaign_id}/participant-sign-in", status_code=204,
    responses=error_responses(401, 403, 404),
)  # fmt: skip
def delete_campaign(campaign_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    """Back to the workspace's methods."""
    ws = _may(principal, CONFIGURE)
    _campaign(session, ws, campaign_id)
    service.clear_campaign(session, ws, campaign_id)
    return Response(status_code=204)
