"""Workspaces, members and API keys. Every other domain scopes its data by ``workspace_id``."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm import Session

from liebian.kit.auth import Principal, Role, generate_api_key, hash_api_key, rank
from liebian.kit.bus import publish_after_commit
from liebian.kit.clock import utcnow
from liebian.kit.errors import Forbidden, Invalid, NotFound, Unauthorized
from liebian.kit.ids import new_id
from liebian.workspaces import repository
from liebian.workspaces.key_cache import REVOKED_TOPIC
from liebian.workspaces.models import ApiKey, Member, Workspace


def create_workspace(session: Session, name: str, timezone: str = "Asia/Shanghai") -> Workspace:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid(
            f"unknown time zone '{timezone}'; use an IANA name such as Asia/Shanghai"
        ) from exc
    workspace = Workspace(id=new_id("ws"), name=name, timezone=timezone, created_at=utcnow())
    session.add(workspace)
    session.flush()
    return workspace


def create_api_key(
    session: Session,
    workspace_id: str,
    role: Role,
    name: str = "",
    *,
    actor: Principal | None = None,
    sensitive: bool = False,
    member_id: str | None = None,
) -> tuple[ApiKey, str]:
    """Returns the stored key and its plaintext, which is shown once and never kept.

    Made by an ``actor`` (the API), the key is owned by the actor's member (or by the member
    owning the actor's key): it never outranks them and dies with their membership. Creating
    a key is a sensitive operation (a second verification, or a sensitive key)."""
    if actor is not None:
        actor.require(Role.admin)
        if not actor.at_least(role):
            raise Forbidden("a key cannot create a key with a higher role than its own")
        if actor.permissions is not None:
            raise Forbidden(
                "a member with a custom role cannot create keys", code="insufficient_role"
            )
        actor.require_step_up("creating an API key")
        member_id = actor.member_id
    plaintext = generate_api_key()
    key = ApiKey(
        id=new_id("key"),
        workspace_id=workspace_id,
        name=name,
        role=role.value,
        key_hash=hash_api_key(plaintext),
        key_hint=plaintext[:7],
        created_at=utcnow(),
        sensitive=sensitive,
        member_id=member_id,
    )
    session.add(key)
    session.flush()
    return key, plaintext


def authenticate(session: Session, plaintext: str) -> Principal:
    if not plaintext.startswith("lb_"):
        raise Unauthorized("API keys start with 'lb_'; send it as 'Authorization: Bearer lb_…'")
    key = repository.find_key_by_hash(session, hash_api_key(plaintext))
    if key is None or key.revoked_at is not None:
        raise Unauthorized("this API key is unknown or revoked", code="invalid_api_key")
    role = Role(key.role)
    permissions: frozenset[str] | None = None
    scope: frozenset[str] | None = None
    if key.member_id is not None:
        # Never above its owner: the lower of the two roles, gone with the membership.
        member = session.get(Member, key.member_id)
        if member is None or member.removed_at is not None:
            raise Unauthorized(
                "this API key's member has left the workspace", code="invalid_api_key"
            )
        if rank(Role(member.role)) < rank(role):
            role = Role(member.role)
        if member.custom_role_id is not None:
            from liebian.team.permissions import custom_role_permissions

            permissions = custom_role_permissions(session, member.custom_role_id)
        if member.data_scope is not None:  # the owner's data scope (team/service.scope_of)
            import json

            scope = frozenset(json.loads(member.data_scope))
    return Principal(
        workspace_id=key.workspace_id,
        role=role,
        key_id=key.id,
        member_id=key.member_id,
        permissions=permissions,
        stepped_up=key.sensitive,
        scope=scope,
    )


def revoke_api_key(session: Session, actor: Principal, key_id: str) -> ApiKey:
    actor.require(Role.admin)
    key = repository.get_key(session, actor.workspace_id, key_id)
    if key is None:
        raise NotFound(f"no API key '{key_id}' in this workspace")
    own = actor.member_id is not None and key.member_id == actor.member_id
    if not own and rank(Role(key.role)) > rank(actor.role):
        # An admin must not lock the owner out (issue 15: DELETE of the owner's key was 200).
        raise Forbidden(
            f"this key has the '{key.role}' role, above yours ('{actor.role.value}'): "
            "only a member of that role may revoke it",
            code="insufficient_role",
        )
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    session.flush()
    publish_after_commit(session, REVOKED_TOPIC, key.id)
    return key


def bootstrap(session: Session, name: str = "默认工作区") -> tuple[Workspace, str]:
    """A workspace with an owner key: what ``liebian init`` makes on a fresh database."""
    workspace = create_workspace(session, name)
    # The installation's root credential: it may do sensitive operations (decision 0021).
    _key, plaintext = create_api_key(
        session, workspace.id, Role.owner, "owner (liebian init)", sensitive=True
    )
    return workspace, plaintext
