"""HTTP for sign-in (``/api/v1/auth/…``), the team (``/api/v1/team/…``) and the audit log
(``/api/v1/audit``)."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from liebian.app.deps import (
    PrincipalDep,
    RuntimeDep,
    SessionDep,
    audit_context,
    get_runtime,
)
from liebian.app.runtime import Runtime
from liebian.kit.auth import Principal, Role
from liebian.kit.clock import utcnow
from liebian.kit.csv_safe import neutralize
from liebian.kit.db import session_scope
from liebian.kit.errors import Forbidden, Invalid, RateLimited, Unauthorized
from liebian.kit.pagination import decode_cursor, encode_cursor
from liebian.kit.ratelimit import Rate, limiter_for
from liebian.kit.schemas import error_responses
from liebian.team import permissions as perms
from liebian.team import service, totp
from liebian.team.audit import AUDIT_KEY, AuditContext, record_attempt
from liebian.team.models import Account, AuditEntry, CustomRole, SecurityPolicy
from liebian.team.schemas import (
    AcceptInvitation,
    AuditOut,
    AuditPage,
    CodeIn,
    EnrollOut,
    InvitationIn,
    InvitationOut,
    MemberOut,
    MemberPatch,
    MeOut,
    PermissionsOut,
    PolicyIn,
    PolicyOut,
    RecoveryCodesOut,
    RoleIn,
    RoleOut,
    ScopeIn,
    SignedOut,
    SignIn,
    SignInOut,
)
from liebian.workspaces.models import Member

auth_router = APIRouter(prefix="/auth", tags=["auth"])
router = APIRouter(tags=["team"])

# Failed sign-ins per IP (offices share one address: generous), on top of the per-account
# lockout kept in the database (team/service.py MAX_FAILURES).
SIGN_IN_PER_IP = Rate(30, 900.0)


def _need(principal: Principal, permission: str) -> None:
    if permission not in perms.holds(principal.role, principal.permissions):
        raise Forbidden(f"this needs the '{permission}' permission", code="insufficient_permission")


def _secure(request: Request, runtime: Runtime) -> bool:
    if request.url.scheme == "https":
        return True
    forwarded = request.headers.get("x-forwarded-proto", "")
    return bool(runtime.settings.trusted_proxies) and forwarded == "https"


def _set_cookies(response: Response, request: Request, runtime: Runtime, token: str) -> str:
    csrf = service.csrf_for(runtime.secret, token)
    secure = _secure(request, runtime)
    max_age = service.SESSION_HOURS * 3600
    response.set_cookie(
        service.SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="lax",
        secure=secure, path="/",
    )  # fmt: skip
    # Readable by the console's script, which echoes it in X-CSRF-Token.
    response.set_cookie(
        service.CSRF_COOKIE, csrf, max_age=max_age, httponly=False, samesite="lax",
        secure=secure, path="/",
    )  # fmt: skip
    return csrf


def _clear_cookies(response: Response) -> None:
    response.delete_cookie(service.SESSION_COOKIE, path="/")
    response.delete_cookie(service.CSRF_COOKIE, path="/")


def _limiter(runtime: Runtime) -> Any:
    return runtime.extras.get("limiter") or runtime.extras.setdefault(
        "limiter", limiter_for(runtime.settings)
    )


def _sign_in_work(
    runtime: Runtime, request: Request, login: str, password: str, workspace_id: str | None
) -> tuple[service.NewSession, Account]:
    now = utcnow()
    ctx = audit_context(request, runtime)
    try:
        with session_scope(runtime.sessions) as session:
            session.info[AUDIT_KEY] = ctx
            account = service.verify_sign_in(session, runtime.cipher, login, password, now)
            started = service.start_session(
                session, account, workspace_id, now, ctx.ip, ctx.user_agent
            )
            ctx.action, ctx.actor_type, ctx.force = "auth.sign_in", "member", True
            ctx.workspace_id, ctx.object_id = started.member.workspace_id, started.member.id
            ctx.member_id = started.member.id
            return started, account
    except (Unauthorized, RateLimited) as exc:
        # Count the failure (and lock the account after too many) in a transaction of its
        # own, and record it in the log of each workspace the account belongs to.
        with session_scope(runtime.sessions) as session:
            account_row = (
                service.record_failure(session, runtime.cipher, login, now)
                if isinstance(exc, Unauthorized)
                else None
            )
            found = account_row or _account_of(session, runtime, login)
            workspaces = (
                [m.workspace_id for m in service.memberships(session, found.id)] if found else []
            )
        for ws in workspaces:
            attempt = AuditContext(
                actor_type="anonymous", action="auth.sign_in_failed", workspace_id=ws,
                ip=ctx.ip, user_agent=ctx.user_agent, object_id=found.id if found else None,
            )  # fmt: skip
            record_attempt(
                runtime.sessions, attempt, outcome="denied", status=exc.status,
                detail={"error": exc.code},
            )  # fmt: skip
        raise


def _account_of(session: Any, runtime: Runtime, login: str) -> Account | None:
    try:
        return service.find_account(session, runtime.cipher, service.parse_login(login))
    except Invalid:
        return None


@auth_router.post(
    "/sign-in", response_model=SignInOut, responses=error_responses(401, 403, 422, 429)
)
async def sign_in(body: SignIn, request: Request, response: Response) -> SignInOut:
    """Email or phone and password → a session cookie (HttpOnly, SameSite=Lax, Secure over
    HTTPS) and the CSRF token to send in ``X-CSRF-Token``. Wrong passwords are limited per
    account (locked for 15 minutes after 5) and per IP."""
    runtime = get_runtime(request)
    limiter = _limiter(runtime)
    ip_key = "signin:" + audit_context(request, runtime).ip
    wait = await limiter.hit(ip_key, SIGN_IN_PER_IP, time.time(), consume=False)
    if wait:
        raise RateLimited(
            "too many failed sign-ins from this network: try again later",
            code="sign_in_rate_limited",
            retry_after=int(wait) + 1,
        )
    try:
        started, account = await run_in_threadpool(
            _sign_in_work, runtime, request, body.login, body.password, body.workspace_id
        )
    except Unauthorized:
        await limiter.hit(ip_key, SIGN_IN_PER_IP, time.time())
        raise
    csrf = _set_cookies(response, request, runtime, started.token)
    return SignInOut(
        member_id=started.member.id,
        workspace_id=started.member.workspace_id,
        role=started.member.role,
        totp_required=started.session.pending_totp,
        totp_enabled=account.totp_enabled_at is not None,
        csrf_token=csrf,
    )


@auth_router.post(
    "/accept-invitation",
    response_model=SignInOut,
    status_code=201,
    responses=error_responses(401, 404, 409, 410, 422),
)
def accept_invitation(
    body: AcceptInvitation, request: Request, response: Response, runtime: RuntimeDep
) -> SignInOut:
    """Use a one-time invitation link: make (or, with its password, join) an account and
    sign in. A used or expired link is 410 and changes nothing."""
    now = utcnow()
    ctx = audit_context(request, runtime)
    with session_scope(runtime.sessions) as session:
        session.info[AUDIT_KEY] = ctx
        member = service.accept_invitation(
            session, runtime.cipher, body.token, body.login, body.password, body.name
        )
        account = session.get(Account, member.account_id)
        assert account is not None
        started = service.start_session(
            session, account, member.workspace_id, now, ctx.ip, ctx.user_agent
        )
        ctx.action, ctx.actor_type = "team.accept_invitation", "member"
        ctx.workspace_id, ctx.object_id = member.workspace_id, member.id
        ctx.member_id = member.id
    csrf = _set_cookies(response, request, runtime, started.token)
    return SignInOut(
        member_id=member.id,
        workspace_id=member.workspace_id,
        role=member.role,
        totp_required=started.session.pending_totp,
        totp_enabled=account.totp_enabled_at is not None,
        csrf_token=csrf,
    )


def _session_account(session: Any, principal: Principal) -> Account:
    if principal.session_id is None or principal.member_id is None:
        raise Invalid(
            "a second verification belongs to a person: sign in to the console "
            "(API keys have none; make a 'sensitive' key instead)",
            code="not_a_session",
        )
    member = session.get(Member, principal.member_id)
    account = session.get(Account, member.account_id) if member else None
    if account is None:
        raise Unauthorized("signed out: sign in again", code="session_expired")
    return account


def _me(session: Any, runtime: Runtime, principal: Principal, stepped: bool | None = None) -> MeOut:
    out = MeOut(
        workspace_id=principal.workspace_id,
        role=principal.role.value,
        member_id=principal.member_id,
        key_id=principal.key_id,
        permissions=sorted(perms.holds(principal.role, principal.permissions)),
        stepped_up=principal.stepped_up if stepped is None else stepped,
        scope=None if principal.scope is None else sorted(principal.scope),
    )
    if principal.member_id:
        member = session.get(Member, principal.member_id)
        account = session.get(Account, member.account_id) if member else None
        if account is not None:
            out.name = account.name
            out.login = service.account_label(runtime.cipher, account)
            out.totp_enabled = account.totp_enabled_at is not None
    return out


@auth_router.get("/me", response_model=MeOut)
def me(principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep) -> MeOut:
    return _me(session, runtime, principal)


@auth_router.post("/step-up", response_model=MeOut, responses=error_responses(409, 422))
def step_up(
    body: CodeIn, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> MeOut:
    """The second verification: a TOTP code (or a recovery code, once). Sensitive operations
    are then allowed for 10 minutes; a workspace that requires TOTP at sign-in lets the
    session in."""
    account = _session_account(session, principal)
    kind = totp.verify(session, runtime.cipher, account, body.code, utcnow())
    assert principal.session_id is not None
    totp.mark_verified(session, principal.session_id, utcnow())
    ctx: AuditContext = session.info[AUDIT_KEY]
    ctx.action, ctx.force, ctx.object_id = f"auth.step_up.{kind}", True, principal.member_id
    return _me(session, runtime, principal, stepped=True)


@auth_router.post("/totp/enroll", response_model=EnrollOut, responses=error_responses(409))
def totp_enroll(principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep) -> EnrollOut:
    """A new authenticator secret: scan the otpauth:// URI (or type the secret), then
    confirm with a first code."""
    account = _session_account(session, principal)
    secret, uri = totp.enroll(
        session, runtime.cipher, account, service.account_label(runtime.cipher, account)
    )
    return EnrollOut(secret=secret, otpauth_uri=uri)


@auth_router.post(
    "/totp/confirm", response_model=RecoveryCodesOut, responses=error_responses(409, 422)
)
def totp_confirm(
    body: CodeIn, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> RecoveryCodesOut:
    """Turn the authenticator on with its first code: ten recovery codes, shown this once."""
    account = _session_account(session, principal)
    codes = totp.confirm(session, runtime.cipher, account, body.code, utcnow())
    assert principal.session_id is not None
    totp.mark_verified(session, principal.session_id, utcnow())
    session.info[AUDIT_KEY].action = "auth.totp_enabled"
    return RecoveryCodesOut(recovery_codes=codes)


@auth_router.post(
    "/recovery-codes", response_model=RecoveryCodesOut, responses=error_responses(403, 409)
)
def renew_recovery_codes(principal: PrincipalDep, session: SessionDep) -> RecoveryCodesOut:
    """Ten new recovery codes, shown this once; the old ones stop working. Needs a second
    verification in the last 10 minutes."""
    account = _session_account(session, principal)
    principal.require_step_up("new recovery codes")
    codes = totp.new_recovery_codes(session, account)
    session.info[AUDIT_KEY].action = "auth.recovery_codes_renewed"
    return RecoveryCodesOut(recovery_codes=codes)


@auth_router.delete("/totp", response_model=MeOut, responses=error_responses(403, 409))
def totp_remove(principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep) -> MeOut:
    """Turn the authenticator off (a new phone: verify with a recovery code, remove, enrol
    the new one). Needs a second verification in the last 10 minutes."""
    account = _session_account(session, principal)
    principal.require_step_up("removing your authenticator")
    totp.remove(session, account)
    session.info[AUDIT_KEY].action = "auth.totp_removed"
    return _me(session, runtime, principal)


@auth_router.post("/sign-out", response_model=SignedOut)
def sign_out(principal: PrincipalDep, session: SessionDep, response: Response) -> SignedOut:
    _clear_cookies(response)
    if principal.session_id is None:
        return SignedOut(sessions_ended=0)
    service.end_session(session, principal.session_id, utcnow())
    session.info[AUDIT_KEY].action = "auth.sign_out"
    return SignedOut(sessions_ended=1)


@auth_router.post("/sign-out-everywhere", response_model=SignedOut)
def sign_out_everywhere(
    principal: PrincipalDep, session: SessionDep, response: Response
) -> SignedOut:
    """End every console session of this person, in every browser and workspace."""
    account = _session_account(session, principal)
    _clear_cookies(response)
    n = service.end_all_sessions(session, account.id, utcnow())
    session.info[AUDIT_KEY].action = "auth.sign_out_everywhere"
    return SignedOut(sessions_ended=n)


# -- team ---------------------------------------------------------------------------------------


def _member_out(session: Any, member: Member) -> MemberOut:
    account = session.get(Account, member.account_id) if member.account_id else None
    out = MemberOut.model_validate(member)
    out.totp_enabled = bool(account and account.totp_enabled_at is not None)
    scope = service.scope_of(member)
    out.scope = None if scope is None else sorted(scope)
    return out


@router.get("/team/permissions", response_model=PermissionsOut)
def list_permissions(principal: PrincipalDep) -> PermissionsOut:
    return PermissionsOut(
        areas=perms.AREAS,
        permissions=sorted(perms.PERMISSIONS),
        roles={role.value: sorted(held) for role, held in perms.BUILT_IN.items()},
    )


@router.get("/team/members", response_model=list[MemberOut])
def list_members(principal: PrincipalDep, session: SessionDep) -> list[MemberOut]:
    _need(principal, "members:read")
    return [_member_out(session, m) for m in service.list_members(session, principal.workspace_id)]


@router.patch(
    "/team/members/{member_id}",
    response_model=MemberOut,
    responses=error_responses(403, 404, 409, 422),
)
def change_role(
    member_id: str, body: MemberPatch, principal: PrincipalDep, session: SessionDep
) -> MemberOut:
    """A new role (or custom role). Never above your own; the last owner stays owner; it
    holds from the member's next request. Needs a second verification."""
    member = service.change_role(session, principal, member_id, body.role, body.custom_role_id)
    session.info[AUDIT_KEY].action = "team.role_changed"
    return _member_out(session, member)


@router.put(
    "/team/members/{member_id}/scope",
    response_model=MemberOut,
    responses=error_responses(403, 404, 422),
)
def set_scope(
    member_id: str, body: ScopeIn, principal: PrincipalDep, session: SessionDep
) -> MemberOut:
    """Limit a member (and their keys) to some communities (``cmy_…``: the whole community)
    or single groups (``cgp_…``); ``null`` for the whole workspace. Never wider than your own
    scope; holds from their next request. Needs a second verification."""
    member = service.set_scope(session, principal, member_id, body.scope)
    session.info[AUDIT_KEY].action = "team.scope_changed"
    return _member_out(session, member)


@router.delete(
    "/team/members/{member_id}", response_model=MemberOut, responses=error_responses(403, 404, 409)
)
def remove_member(member_id: str, principal: PrincipalDep, session: SessionDep) -> MemberOut:
    """Remove from the workspace: their sessions end and their keys are revoked."""
    member = service.remove_member(session, principal, member_id)
    session.info[AUDIT_KEY].action = "team.member_removed"
    return _member_out(session, member)


@router.post(
    "/team/invitations",
    response_model=InvitationOut,
    status_code=201,
    responses=error_responses(403, 404, 422),
)
def create_invitation(
    body: InvitationIn, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> InvitationOut:
    """A one-time link (valid 7 days) to join with this role; the link is shown once."""
    from liebian.kit.crypto import mask_email

    invitation, token = service.invite(
        session,
        principal,
        body.role,
        body.custom_role_id,
        mask_email(body.email) or "",
        scope=body.scope,
    )
    session.info[AUDIT_KEY].action = "team.invited"
    base = runtime.settings.base_url.rstrip("/")
    return InvitationOut(
        id=invitation.id,
        role=invitation.role,
        custom_role_id=invitation.custom_role_id,
        expires_at=invitation.expires_at,
        url=f"{base}/admin/join#{token}",
        token=token,
    )


def _role_out(role: CustomRole) -> RoleOut:
    return RoleOut(
        id=role.id,
        name=role.name,
        permissions=sorted(perms.parse(role.permissions)),
        created_at=role.created_at,
    )


@router.get("/team/roles", response_model=list[RoleOut])
def list_roles(principal: PrincipalDep, session: SessionDep) -> list[RoleOut]:
    _need(principal, "members:read")
    return [_role_out(r) for r in service.list_roles(session, principal.workspace_id)]


@router.post(
    "/team/roles", response_model=RoleOut, status_code=201, responses=error_responses(403, 409, 422)
)
def create_role(body: RoleIn, principal: PrincipalDep, session: SessionDep) -> RoleOut:
    """A custom role from permissions (GET /team/permissions lists them); never more than
    you hold."""
    role = service.create_role(session, principal, body.name, body.permissions)
    session.info[AUDIT_KEY].action = "team.role_created"
    return _role_out(role)


@router.get("/team/policy", response_model=PolicyOut)
def get_policy(principal: PrincipalDep, session: SessionDep) -> PolicyOut:
    _need(principal, "members:read")
    p = service.policy(session, principal.workspace_id)
    return PolicyOut(require_totp=p.require_totp, audit_retention_days=p.audit_retention_days)


@router.put("/team/policy", response_model=PolicyOut, responses=error_responses(403, 422))
def put_policy(body: PolicyIn, principal: PrincipalDep, session: SessionDep) -> PolicyOut:
    """Require the authenticator at sign-in; how long the audit log keeps entries."""
    _need(principal, "members:write")
    principal.require(Role.owner)
    principal.require_step_up("changing the workspace's security policy")
    row = session.get(SecurityPolicy, principal.workspace_id)
    if row is None:
        row = SecurityPolicy(workspace_id=principal.workspace_id)
        session.add(row)
    row.require_totp, row.audit_retention_days = body.require_totp, body.audit_retention_days
    session.flush()
    session.info[AUDIT_KEY].action = "team.policy_changed"
    return PolicyOut(require_totp=row.require_totp, audit_retention_days=row.audit_retention_days)


# -- audit log ----------------------------------------------------------------------------------

Limit = Annotated[int, Query(ge=1, le=500)]


def _audit_query(
    principal: Principal,
    member_id: str | None,
    key_id: str | None,
    object_id: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Any:
    _need(principal, "audit:read")
    stmt = select(AuditEntry).where(AuditEntry.workspace_id == principal.workspace_id)
    if member_id:
        stmt = stmt.where(AuditEntry.member_id == member_id)
    if key_id:
        stmt = stmt.where(AuditEntry.key_id == key_id)
    if object_id:
        stmt = stmt.where(AuditEntry.object_id == object_id)
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    if since:
        stmt = stmt.where(AuditEntry.at >= since)
    if until:
        stmt = stmt.where(AuditEntry.at < until)
    return stmt


def _audit_out(row: AuditEntry) -> AuditOut:
    return AuditOut(
        id=row.id, at=row.at, actor_type=row.actor_type, member_id=row.member_id,
        key_id=row.key_id, action=row.action, object_type=row.object_type,
        object_id=row.object_id, changes=json.loads(row.changes or "{}"), ip=row.ip,
        user_agent=row.user_agent, outcome=row.outcome, status=row.status,
    )  # fmt: skip


AuditFilters = Annotated[str | None, Query(max_length=100)]


@router.get("/audit", response_model=AuditPage, responses=error_responses(403, 422))
def list_audit(
    principal: PrincipalDep,
    session: SessionDep,
    member_id: AuditFilters = None,
    key_id: AuditFilters = None,
    object_id: AuditFilters = None,
    action: AuditFilters = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: AuditFilters = None,
    limit: Limit = 100,
) -> AuditPage:
    """Who did what, newest first; filter by member, key, object, action and time."""
    stmt = _audit_query(principal, member_id, key_id, object_id, action, since, until)
    if cursor:
        stmt = stmt.where(AuditEntry.id < decode_cursor(cursor))
    rows = list(session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return AuditPage(items=[_audit_out(r) for r in rows[:limit]], next_cursor=next_cursor)


AUDIT_COLUMNS = (
    "id", "at", "actor_type", "member_id", "key_id", "action", "object_type", "object_id",
    "outcome", "status", "ip", "user_agent", "changes",
)  # fmt: skip


@router.get(
    "/audit/export.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, **error_responses(403, 422)},
)
def export_audit(
    principal: PrincipalDep,
    session: SessionDep,
    member_id: AuditFilters = None,
    key_id: AuditFilters = None,
    object_id: AuditFilters = None,
    action: AuditFilters = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Response:
    """The filtered log as CSV (formula-safe); the export is itself recorded."""
    stmt = _audit_query(principal, member_id, key_id, object_id, action, since, until)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(AUDIT_COLUMNS)
    for row in session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(100_000)):
        writer.writerow([neutralize(str(getattr(row, c) or "")) for c in AUDIT_COLUMNS])
    session.info[AUDIT_KEY].action = "audit.export"
    return Response(
        ("\ufeff" + buf.getvalue()).encode(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="audit.csv"'},
    )
