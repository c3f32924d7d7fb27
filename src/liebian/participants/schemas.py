"""Pydantic in/out of the sign-in settings API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Method = Literal["token", "sms", "wechat"]
WeChatScope = Literal["snsapi_base", "snsapi_userinfo"]


class WorkspaceSignInIn(BaseModel):
    """The workspace's sign-in methods and what they need. A field left out keeps its value;
    ``wechat_app_secret`` is write-only (shown back as its last four characters)."""

    model_config = ConfigDict(extra="forbid")

    methods: list[Method] | None = Field(
        None, description="What the campaign pages offer, in this order: token (the brand's "
        "signed link), sms (phone + one-time code), wechat (WeChat web authorization)",
        min_length=1, max_length=3,
    )  # fmt: skip
    sms_channel_id: str | None = Field(None, max_length=40, description="An sms channel (chn_…)")
    sms_text: str | None = Field(
        None, max_length=300,
        description="The message; {code} and {minutes} are filled in. Default: "
        "【验证码】{code}，{minutes}分钟内有效，请勿告诉他人。",
    )  # fmt: skip
    sms_template_id: str | None = Field(None, max_length=64)
    wechat_app_id: str | None = Field(
        None, max_length=64, description="The official account's AppID"
    )
    wechat_app_secret: str | None = Field(None, max_length=128, description="Its AppSecret")
    wechat_scope: WeChatScope | None = None


class CampaignSignInIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    methods: list[Method] = Field(min_length=1, max_length=3)


class SignInOut(BaseModel):
    scope: str
    methods: list[Method]
    offered: list[Method] = Field(
        description="The methods a page shows: those configured and usable"
    )
    sms_channel_id: str | None = None
    sms_text: str | None = None
    sms_template_id: str | None = None
    wechat_app_id: str | None = None
    wechat_secret_hint: str | None = None
    wechat_scope: WeChatScope = "snsapi_base"
    inherited: bool = Field(False, description="A campaign without methods of its own")
