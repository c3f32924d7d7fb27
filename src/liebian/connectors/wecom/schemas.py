"""Pydantic in/out shapes of the WeCom connector API (input is strict: unknown fields 422)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from liebian.kit.schemas import StrictModel


class ConnectionIn(StrictModel):
    corp_id: str = Field(min_length=1, max_length=64, description="企业ID (corpid)")
    agent_secret: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="the secret whose token may call 客户联系 APIs; omit to keep the stored one",
    )  # fmt: skip
    token: str | None = Field(default=None, max_length=32, description="callback Token")
    encoding_aes_key: str | None = Field(
        default=None, max_length=43, description="callback EncodingAESKey (43 characters)"
    )
    agent_id: str | None = Field(default=None, max_length=32)


class ConnectionOut(BaseModel):
    id: str
    corp_id: str
    agent_id: str | None
    secret_hint: str = Field(description="the secret's last characters; secrets are never shown")
    callback_url: str = Field(description="set this as the URL of WeCom's 接收事件服务器")
    last_callback_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CheckOut(BaseModel):
    ok: bool
    corp_id: str


class WayIn(StrictModel):
    kind: Literal["contact", "join"] = Field(description="contact: 联系我; join: 加入群聊")
    state: str = Field(min_length=1, max_length=30, description="names the channel; ≤ 30 chars")
    targets: list[str] = Field(
        min_length=1, max_length=100,
        description="staff user ids (contact) or customer group chat ids (join, at most 5)",
    )  # fmt: skip
    channel: str | None = Field(default=None, max_length=64)
    remark: str = Field(default="", max_length=30)
    welcome_text: str | None = Field(
        default=None, min_length=1, max_length=4000,
        description="contact ways: sent as the welcome message (send_welcome_msg) to whoever "
        "is added through the way; given again for an existing state, it replaces the text",
    )  # fmt: skip


class WayOut(BaseModel):
    id: str
    kind: str
    state: str
    channel: str | None
    config_id: str
    qr_code: str | None
    targets: list[str]
    welcome_text: str | None
    created_at: datetime


class WayList(BaseModel):
    items: list[WayOut]


class WelcomeIn(StrictModel):
    welcome_code: str = Field(min_length=1, max_length=256)
    text: str = Field(min_length=1, max_length=4000)


class WelcomeOut(BaseModel):
    status: Literal["sent", "failed", "expired", "duplicate", "unknown"]
    reason: str | None
    errcode: int | None
    errmsg: str | None


class MassSendIn(StrictModel):
    idempotency_key: str = Field(min_length=1, max_length=200)
    external_userids: list[str] = Field(min_length=1, max_length=10000)
    text: str = Field(min_length=1, max_length=4000)
    sender: str | None = Field(default=None, max_length=128, description="staff user id")


class MassSendOut(BaseModel):
    id: str
    status: Literal["created", "refused", "failed", "unknown", "sending"]
    msgid: str | None
    recipients: list[str]
    over_cap: list[str] = Field(description="left out: already at WeCom's monthly cap")
    fail_list: list[str] = Field(description="refused by WeCom")
    reason: str | None
    errcode: int | None
    errmsg: str | None


class ReceiptItem(BaseModel):
    external_userid: str
    received: int
    remaining: int


class ReceiptsOut(BaseModel):
    month: str
    cap: int
    items: list[ReceiptItem]


class TagSyncOut(BaseModel):
    created: int = Field(description="liebian tags made for new corp tags")
    linked: int = Field(description="corp tags linked to a liebian tag of the same name")
    renamed: int
    unlinked: int = Field(description="corp tags gone from WeCom (their liebian tags stay)")
    skipped: int = Field(description="names taken by a rule tag or another mirrored tag")


class TagMapItem(BaseModel):
    corp_tag_id: str
    tag_id: str
    name: str
    corp_group_name: str


class TagMapOut(BaseModel):
    items: list[TagMapItem]


class CallbackOut(BaseModel):
    id: str
    event: str
    change_type: str
    summary: dict[str, str] = Field(
        description="who and what: UserID, ExternalUserID, ChatId, State, UpdateDetail"
    )
    received_at: datetime


class CallbackList(BaseModel):
    items: list[CallbackOut]


class GroupSendIn(StrictModel):
    idempotency_key: str = Field(min_length=1, max_length=200)
    sender: str = Field(min_length=1, max_length=64, description="the groups' owner (WeCom userid)")
    chat_ids: list[str] = Field(min_length=1, max_length=2000)
    text: str = Field(min_length=1, max_length=4000)


class TaskItemOut(BaseModel):
    target: str = Field(description="chat id (group task) or external_userid (customer task)")
    status: Literal["pending", "sent", "failed", "over_cap", "refused", "unknown", "sending"]
    reason: str | None = None


class TaskOut(BaseModel):
    id: str
    chat_type: Literal["single", "group"]
    status: str = Field(description="sending / created / failed / refused / unknown")
    progress: Literal[
        "sending", "pending_confirmation", "sent", "partly_sent", "failed", "refused", "unknown"
    ]
    sender: str | None
    msgid: str | None
    month: str
    source: str | None
    text: str
    items: list[TaskItemOut]
    errcode: int | None
    errmsg: str | None
    created_at: datetime | None
    results_at: datetime | None


class TaskList(BaseModel):
    items: list[TaskOut]
    monthly_cap: int = Field(
        description="WeCom: mass messages one customer or group receives a month"
    )
