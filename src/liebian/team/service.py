"""Members, invitations, console sign-in and sessions, custom roles.

Authorization stays where it was: a signed-in member becomes the same ``Principal`` an API key
does (kit/auth.py), built in app/deps.py from the session cookie; the domains keep their role
checks. This module decides who a cookie belongs to, and what a member may grant.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from liebian.kit.auth import STEP_UP_SECONDS, Principal, Role, rank
from liebian.kit.bus import publish_after_commit
from liebian.kit.clock import utcnow
from liebian.kit.crypto import PiiCipher, mask_email, mask_phone
from liebian.kit.errors import Conflict, Forbidden, Gone, Invalid, NotFound, Unauthorized
from liebian.kit.ids import new_id
from liebian.kit.passwords import hash_member_password, verify_nothing, verify_password
from liebian.risk.normalize import normalize_email, normalize_phone
from liebian.team import permissions as perms
from liebian.team.models import Account, ConsoleSession, CustomRole, Invitation, SecurityPolicy
from liebian.workspaces.key_cache import REVOKED_TOPIC
from liebian.workspaces.models import ApiKey, Member

SESSION_COOKIE = "lb_session"
CSRF_COOKIE = "lb_csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_HOURS = 12
INVITATION_DAYS = 7
# Per account: this many wrong passwords in a row lock it for LOCK_MINUTES (kept in the
# database: every process, and restarts, see the same count).
MAX_FAILURES = 5
LOCK_MINUTES = 15
MIN_PASSWORD = 10
_COMMON = frozenset(
    {
        "password123", "1234567890", "qwertyuiop", "1q2w3e4r5t", "abcd123456",
        "iloveyou123", "admin12345", "welcome123", "password1234", "0123456789",
    }
)  # fmt: skip


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_for(secret: bytes, session_token: str) -> str:
    """The CSRF token of a session: derived, so nothing more is stored; sent back by the
    console in ``X-CSRF-Token`` on every state-changing request."""
    return hmac.new(secret, b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()[:40]


# -- logins and passwords --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Login:
    kind: str  # "email" | "phone"
    normalized: str
    raw: str


def parse_login(raw: str) -> Login:
    text = raw.strip()
    if not text:
        raise Invalid(
            "enter your email or phone number", code="invalid_login", details={"field": "login"}
        )
    if "@" in text:
        return Login("email", normalize_email(text), text)
    return Login("phone", normalize_phone(text), text)


def check_password(password: str, login: str = "") -> None:
    """A weak password is a 422 that says what would do."""
    problems = []
    if len(password) < MIN_PASSWORD:
        problems.append(f"at least {MIN_PASSWORD} characters")
    classes = sum(
        [
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        ]
    )
    if classes < 2:
        problems.append("mix letters with digits or symbols")
    lowered = password.lower()
    local = login.split("@", 1)[0].lower()
    if lowered in _COMMON or (len(local) >= 4 and local in lowered) or len(set(password)) < 4:
        problems.append("not a common password, and not your email or phone")
    if problems:
        raise Invalid(
            "password too weak: use " + "; ".join(problems),
            code="weak_password",
            details={"field": "password"},
        )


def find_account(session: Session, cipher: PiiCipher, login: Login) -> Account | None:
    digest = cipher.lookup_hash(login.normalized)
    column = Account.email_hash if login.kind == "email" else Account.phone_hash
    return session.scalars(select(Account).where(column == digest)).first()


def account_label(cipher: PiiCipher, account: Account) -> str:
    """Masked email or phone: what lists and the audit log show of a member."""
    email = cipher.decrypt(account.email_enc)
    if email:
        return mask_email(email) or ""
    return mask_phone(cipher.decrypt(account.phone_enc)) or ""


def create_account(
    session: Session, cipher: PiiCipher, login: Login, password: str, name: str = ""
) -> Account:
    check_password(password, login.normalized)
    if find_account(session, cipher, login) is not None:
        raise Conflict(
            f"an account with this {login.kind} exists: sign in with it to accept",
            code="account_exists",
            details={"field": "login"},
        )
    digest = cipher.lookup_hash(login.normalized)
    account = Account(
        id=new_id("acct"),
        name=name,
        password_hash=hash_member_password(password),
        failed_signins=0,
        created_at=utcnow(),
    )
    if login.kind == "email":
        account.email_hash, account.email_enc = digest, cipher.encrypt(login.raw.lower())
    else:
        account.phone_hash, account.phone_enc = digest, cipher.encrypt(login.normalized)
    session.add(account)
    session.flush()
    return account


# -- members -----------------------------------------------------------------------------------


def add_member(
    session: Session,
    cipher: PiiCipher,
    workspace_id: str,
    account: Account,
    role: Role,
    custom_role_id: str | None = None,
) -> Member:
    existing = session.scalars(
        select(Member).where(Member.workspace_id == workspace_id, Member.account_id == account.id)
    ).first()
    if existing is not None and existing.removed_at is None:
        raise Conflict("already a member of this workspace", code="already_member")
    if existing is not None:  # came back: one row per person and workspace
        existing.removed_at, existing.role, existing.custom_role_id = None, role.value, None
        existing.custom_role_id = custom_role_id
        session.flush()
        return existing
    member = Member(
        id=new_id("mbr"),
        workspace_id=workspace_id,
        account_id=account.id,
        email=account_label(cipher, account),
        name=account.name,
        role=role.value,
        custom_role_id=custom_role_id,
        created_at=utcnow(),
    )
    session.add(member)
    session.flush()
    return member


def get_member(session: Session, workspace_id: str, member_id: str) -> Member:
    member = session.get(Member, member_id)
    if member is None or member.workspace_id != workspace_id or member.removed_at is not None:
        raise NotFound(f"no member '{member_id}' in this workspace")
    return member


def list_members(session: Session, workspace_id: str) -> list[Member]:
    return list(
        session.scalars(
            select(Member)
            .where(Member.workspace_id == workspace_id, Member.removed_at.is_(None))
            .order_by(Member.id)
        )
    )


def held(principal: Principal) -> frozenset[str]:
    return perms.holds(principal.role, principal.permissions)


def _grantable(session: Session, actor: Principal, role: Role, custom_role_id: str | None) -> None:
    """No one grants more than they hold."""
    if "members:write" not in held(actor):
        raise Forbidden(
            "managing members needs the 'members:write' permission",
            code="insufficient_permission",
        )
    if rank(role) > rank(actor.role):
        raise Forbidden(
            f"you cannot grant '{role.value}': it is above your own role",
            code="grant_above_own",
        )
    granted = perms.BUILT_IN[role]
    if custom_role_id is not None:
        custom = session.get(CustomRole, custom_role_id)
        if custom is None or custom.workspace_id != actor.workspace_id:
            raise NotFound(f"no custom role '{custom_role_id}' in this workspace")
        granted = perms.parse(custom.permissions)
    missing = granted - held(actor)
    if missing:
        raise Forbidden(
            "you cannot grant permissions you do not hold: " + ", ".join(sorted(missing)),
            code="grant_above_own",
            details={"permissions": sorted(missing)},
        )


def _owners(session: Session, workspace_id: str) -> int:
    return len(
        session.scalars(
            select(Member.id).where(
                Member.workspace_id == workspace_id,
                Member.role == Role.owner.value,
                Member.removed_at.is_(None),
                Member.custom_role_id.is_(None),
            )
        ).all()
    )


def change_role(
    session: Session,
    actor: Principal,
    member_id: str,
    role: Role,
    custom_role_id: str | None = None,
) -> Member:
    _grantable(session, actor, role, custom_role_id)
    actor.require_step_up("changing a member's role")
    member = get_member(session, actor.workspace_id, member_id)
    if rank(Role(member.role)) > rank(actor.role):
        raise Forbidden("you cannot change the role of a member above you", code="grant_above_own")
    was_owner = member.role == Role.owner.value and member.custom_role_id is None
    if (
        was_owner
        and (role != Role.owner or custom_role_id)
        and _owners(session, member.workspace_id) <= 1
    ):
        raise Conflict("this is the last owner: make another member owner first", code="last_owner")
    member.role, member.custom_role_id = role.value, custom_role_id
    session.flush()
    # Keys owned by the member are cached for a few seconds: forget them now, so the new
    # role holds from the next request.
    publish_after_commit(session, REVOKED_TOPIC, member.id)
    return member


def remove_member(session: Session, actor: Principal, member_id: str) -> Member:
    _grantable(session, actor, Role.viewer, None)
    member = get_member(session, actor.workspace_id, member_id)
    if rank(Role(member.role)) > rank(actor.role):
        raise Forbidden("you cannot remove a member above you", code="grant_above_own")
    if member.role == Role.owner.value and _owners(session, member.workspace_id) <= 1:
        raise Conflict("the last owner cannot be removed", code="last_owner")
    now = utcnow()
    member.removed_at = now
    session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.member_id == member.id, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    session.execute(
        update(ApiKey)
        .where(ApiKey.member_id == member.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    session.flush()
    publish_after_commit(session, REVOKED_TOPIC, member.id)
    return member


# -- data scope --------------------------------------------------------------------------------


def scope_of(member: Member) -> frozenset[str] | None:
    """A member's data scope (community and group ids), None for the whole workspace."""
    return None if member.data_scope is None else frozenset(json.loads(member.data_scope))


def check_scope(session: Session, actor: Principal, ids: list[str] | None) -> str | None:
    """The scope as stored (JSON), after the checks: every id names a community or group of
    the workspace (422), and lies inside the actor's own scope (403: no one grants more than
    they see; a scoped actor cannot give the whole workspace)."""
    from liebian.communities import service as communities

    if ids is None:
        if actor.scope is not None:
            raise Forbidden(
                "your own data scope is limited: you cannot give the whole workspace",
                code="grant_above_own",
            )
        return None
    wanted = sorted(set(ids))
    if not wanted:
        raise Invalid(
            "a data scope names at least one community or group (null: the whole workspace)",
            code="invalid_scope",
            details={"field": "scope"},
        )
    unknown = communities.scope_problems(session, actor.workspace_id, wanted)
    if unknown:
        raise Invalid(
            "not a community or group of this workspace: " + ", ".join(unknown),
            code="invalid_scope",
            details={"field": "scope", "unknown": unknown},
        )
    if not communities.scope_within(session, actor, wanted):
        raise Forbidden("you cannot give a data scope wider than your own", code="grant_above_own")
    return json.dumps(wanted)


def set_scope(session: Session, actor: Principal, member_id: str, ids: list[str] | None) -> Member:
    """Limit a member (and the keys they own) to some communities or groups; from their next
    request. A change of what someone may see, so a sensitive operation like a role change."""
    _grantable(session, actor, Role.viewer, None)
    actor.require_step_up("changing a member's data scope")
    member = get_member(session, actor.workspace_id, member_id)
    if rank(Role(member.role)) > rank(actor.role):
        raise Forbidden("you cannot change the scope of a member above you", code="grant_above_own")
    if member.id == actor.member_id and ids is None and actor.scope is not None:
        raise Forbidden("you cannot widen your own data scope", code="grant_above_own")
    member.data_scope = check_scope(session, actor, ids)
    session.flush()
    publish_after_commit(session, REVOKED_TOPIC, member.id)
    return member


# -- custom roles ------------------------------------------------------------------------------


def create_role(
    session: Session, actor: Principal, name: str, permissions: list[str]
) -> CustomRole:
    unknown = sorted(set(permissions) - perms.PERMISSIONS)
    if unknown:
        raise Invalid(
            "unknown permission: " + ", ".join(unknown) + "; see GET /api/v1/team/permissions",
            code="unknown_permission",
            details={"field": "permissions", "unknown": unknown},
        )
    wanted = frozenset(permissions)
    _grantable(session, actor, Role.viewer, None)
    missing = wanted - held(actor)
    if missing:
        raise Forbidden(
            "a role cannot hold permissions you do not hold: " + ", ".join(sorted(missing)),
            code="grant_above_own",
        )
    taken = session.scalars(
        select(CustomRole.id).where(
            CustomRole.workspace_id == actor.workspace_id, CustomRole.name == name
        )
    ).first()
    if taken:
        raise Conflict(f"a role named '{name}' exists", code="role_exists")
    role = CustomRole(
        id=new_id("rol"),
        workspace_id=actor.workspace_id,
        name=name,
        permissions=json.dumps(sorted(wanted)),
        created_at=utcnow(),
    )
    session.add(role)
    session.flush()
    return role


def list_roles(session: Session, workspace_id: str) -> list[CustomRole]:
    return list(
        session.scalars(
            select(CustomRole)
            .where(CustomRole.workspace_id == workspace_id)
            .order_by(CustomRole.id)
        )
    )


# -- invitations -------------------------------------------------------------------------------


def invite(
    session: Session,
    actor: Principal,
    role: Role,
    custom_role_id: str | None = None,
    email_masked: str = "",
    scope: list[str] | None = None,
) -> tuple[Invitation, str]:
    """A one-time link's token (shown once) for whoever opens it."""
    _grantable(session, actor, role, custom_role_id)
    data_scope = check_scope(session, actor, scope)
    token = "inv_" + secrets.token_urlsafe(32)
    now = utcnow()
    invitation = Invitation(
        id=new_id("inv"),
        workspace_id=actor.workspace_id,
        token_hash=token_hash(token),
        role=role.value,
        custom_role_id=custom_role_id,
        email_masked=email_masked,
        invited_by=actor.member_id,
        created_at=now,
        expires_at=now + timedelta(days=INVITATION_DAYS),
        data_scope=data_scope,
    )
    session.add(invitation)
    session.flush()
    return invitation, token


def owner_invitation(session: Session, workspace_id: str) -> tuple[Invitation, str]:
    """The first owner's link (``liebian team owner-link``: the server's operator)."""
    token = "inv_" + secrets.token_urlsafe(32)
    now = utcnow()
    invitation = Invitation(
        id=new_id("inv"),
        workspace_id=workspace_id,
        token_hash=token_hash(token),
        role=Role.owner.value,
        created_at=now,
        expires_at=now + timedelta(days=1),
    )
    session.add(invitation)
    session.flush()
    return invitation, token


def accept_invitation(
    session: Session,
    cipher: PiiCipher,
    token: str,
    login: str,
    password: str,
    name: str = "",
) -> Member:
    """Use the link once: a new account (or an existing one, proven by its password) joins."""
    now = utcnow()
    invitation = session.scalars(
        select(Invitation).where(Invitation.token_hash == token_hash(token))
    ).first()
    if invitation is None:
        raise NotFound("this invitation link is not valid", code="invalid_invitation")
    if invitation.used_at is not None:
        raise Gone("this invitation link was already used", code="invitation_used")
    if invitation.expires_at < now:
        raise Gone("this invitation link has expired: ask for a new one", code="invitation_expired")
    parsed = parse_login(login)
    account = find_account(session, cipher, parsed)
    if account is None:
        account = create_account(session, cipher, parsed, password, name)
    elif not account.password_hash or not verify_password(account.password_hash, password):
        raise Unauthorized(
            "an account with this login exists: enter its password to join",
            code="wrong_password",
        )
    # Used at most once, even by two requests at the same moment: the conditional UPDATE
    # matches one of them.
    claimed = session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, Invitation.used_at.is_(None))
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise Gone("this invitation link was already used", code="invitation_used")
    member = add_member(
        session,
        cipher,
        invitation.workspace_id,
        account,
        Role(invitation.role),
        invitation.custom_role_id,
    )
    invitation.member_id = member.id
    member.data_scope = invitation.data_scope
    session.flush()
    return member


# -- sign-in and sessions -----------------------------------------------------------------------


def policy(session: Session, workspace_id: str) -> SecurityPolicy:
    found = session.get(SecurityPolicy, workspace_id)
    return found or SecurityPolicy(
        workspace_id=workspace_id, require_totp=False, audit_retention_days=365
    )


def memberships(session: Session, account_id: str) -> list[Member]:
    return list(
        session.scalars(
            select(Member)
            .where(Member.account_id == account_id, Member.removed_at.is_(None))
            .order_by(Member.id)
        )
    )


def verify_sign_in(
    session: Session, cipher: PiiCipher, login: str, password: str, now: datetime
) -> Account:
    """The account, or raises ``Unauthorized`` (wrong login or password, same message) or
    ``RateLimited`` (locked after too many failures). Counting failures is the caller's:
    the failure must be committed though the request fails (``record_failure``)."""
    from liebian.kit.errors import RateLimited

    try:
        parsed = parse_login(login)
    except Invalid as exc:
        raise Unauthorized("wrong email/phone or password", code="wrong_password") from exc
    account = find_account(session, cipher, parsed)
    if account is not None and account.locked_until is not None and account.locked_until > now:
        wait = int((account.locked_until - now).total_seconds()) + 1
        raise RateLimited(
            f"too many wrong passwords for this account: try again in {wait // 60 + 1} minutes",
            code="account_locked",
            retry_after=wait,
        )
    if account is None or not account.password_hash:
        verify_nothing(password)
        raise Unauthorized("wrong email/phone or password", code="wrong_password")
    if not verify_password(account.password_hash, password):
        raise Unauthorized("wrong email/phone or password", code="wrong_password")
    return account


def record_failure(
    session: Session, cipher: PiiCipher, login: str, now: datetime
) -> Account | None:
    try:
        account = find_account(session, cipher, parse_login(login))
    except Invalid:
        return None
    if account is None:
        return None
    account.failed_signins = (account.failed_signins or 0) + 1
    if account.failed_signins >= MAX_FAILURES:
        account.locked_until = now + timedelta(minutes=LOCK_MINUTES)
        account.failed_signins = 0
    session.flush()
    return account


@dataclass(frozen=True, slots=True)
class NewSession:
    session: ConsoleSession
    token: str
    member: Member


def start_session(
    session: Session,
    account: Account,
    workspace_id: str | None,
    now: datetime,
    ip: str = "",
    user_agent: str = "",
) -> NewSession:
    member_rows = memberships(session, account.id)
    if workspace_id:
        member_rows = [m for m in member_rows if m.workspace_id == workspace_id]
    if not member_rows:
        raise Forbidden(
            "this account is not a member of "
            + ("that workspace" if workspace_id else "any workspace"),
            code="not_a_member",
        )
    member = member_rows[0]
    account.failed_signins, account.locked_until = 0, None
    token = "lbs_" + secrets.token_urlsafe(32)
    row = ConsoleSession(
        id=new_id("ses"),
        account_id=account.id,
        workspace_id=member.workspace_id,
        member_id=member.id,
        token_hash=token_hash(token),
        created_at=now,
        expires_at=now + timedelta(hours=SESSION_HOURS),
        # A workspace that requires TOTP at sign-in: the session can do nothing but verify
        # (or enrol first) until the code is given.
        pending_totp=policy(session, member.workspace_id).require_totp,
        ip=ip[:64],
        user_agent=user_agent[:300],
    )
    session.add(row)
    session.flush()
    return NewSession(row, token, member)


def principal_for_session(
    session: Session, token: str, now: datetime
) -> tuple[Principal, ConsoleSession]:
    row = session.scalars(
        select(ConsoleSession).where(ConsoleSession.token_hash == token_hash(token))
    ).first()
    if row is None or row.revoked_at is not None or row.expires_at < now:
        raise Unauthorized("signed out: sign in again", code="session_expired")
    member = session.get(Member, row.member_id)
    if member is None or member.removed_at is not None:
        raise Unauthorized("you are no longer a member of this workspace", code="session_expired")
    permissions = None
    role = Role(member.role)
    if member.custom_role_id is not None:
        permissions = perms.custom_role_permissions(session, member.custom_role_id)
        role = perms.base_role(permissions)
    verified = row.verified_at is not None and (now - row.verified_at) <= timedelta(
        seconds=STEP_UP_SECONDS
    )
    principal = Principal(
        workspace_id=row.workspace_id,
        role=role,
        member_id=member.id,
        session_id=row.id,
        permissions=permissions,
        stepped_up=verified,
        scope=scope_of(member),
    )
    return principal, row


def end_session(session: Session, session_id: str, now: datetime) -> None:
    session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.id == session_id, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def end_all_sessions(session: Session, account_id: str, now: datetime) -> int:
    """Sign out everywhere: every browser of this person, in every workspace."""
    result = session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.account_id == account_id, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
