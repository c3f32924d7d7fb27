"""Live code API shapes. Unknown fields are rejected; images are checked before any write.

A target is either a URL (the scan answers 302) or an uploaded group QR image (the scan shows
it on a small page). Images arrive base64-encoded in JSON (optionally as a ``data:`` URI) so a
whole live code is created in one call; they are decoded and opened with Pillow here, so a
bad upload is a 422 naming the field and nothing is written.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from datetime import datetime
from typing import Final, Literal

from PIL import Image, UnidentifiedImageError
from pydantic import AwareDatetime, Field, PrivateAttr, field_validator, model_validator

from liebian.kit.errors import Invalid
from liebian.kit.schemas import OutModel, StrictModel
from liebian.links.schemas import MAX_URL, SLUG_RE
from liebian.links.validation import validate_destination

MAX_IMAGE_BYTES: Final = 1024 * 1024
# Group QR screenshots are a few hundred pixels; refuse decompression bombs before decoding.
MAX_IMAGE_PIXELS: Final = 4096 * 4096
IMAGE_TYPES: Final = {"PNG": "image/png", "JPEG": "image/jpeg"}
MAX_TARGETS: Final = 100
MAX_CAPACITY: Final = 1_000_000

_DATA_URI = re.compile(r"^data:image/(?:png|jpeg|jpg);base64,", re.IGNORECASE)
_CHANNEL = re.compile(r"[A-Za-z0-9_.\-\u4e00-\u9fff]{1,64}")


def check_url(value: str) -> str:
    """http(s) with a host, nothing else: a live code must never serve javascript:, data:, …

    The shared destination check, minus the server's blocklist (the service applies that,
    since settings are not known here); its message becomes a 422 on the field.
    """
    try:
        return validate_destination(value)
    except Invalid as exc:
        raise ValueError(exc.message.replace("url ", "", 1)) from None


def decode_image(value: str) -> tuple[bytes, str]:
    """Base64 (or a data: URI) → (bytes, content type); ValueError says what is wrong."""
    payload = _DATA_URI.sub("", value.strip(), count=1)
    # 4 base64 characters carry 3 bytes: refuse oversized text before decoding it.
    if len(payload) > (MAX_IMAGE_BYTES * 4) // 3 + 8:
        raise ValueError("image must be at most 1 MB")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("image must be base64-encoded PNG or JPEG data") from None
    if len(raw) > MAX_IMAGE_BYTES:
        raise ValueError("image must be at most 1 MB")
    try:
        with Image.open(io.BytesIO(raw), formats=tuple(IMAGE_TYPES)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ValueError("image must be at most 4096×4096 pixels")
            fmt = image.format or ""
            image.load()  # decodes fully: a truncated or corrupt file fails here, not on phones
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
        raise ValueError("image must be a readable PNG or JPEG file") from None
    return raw, IMAGE_TYPES[fmt]


class TargetIn(StrictModel):
    label: str = Field(default="", max_length=200, description="e.g. 3群")
    url: str | None = Field(default=None, max_length=MAX_URL)
    image: str | None = Field(
        default=None, description="base64 PNG/JPEG (≤ 1 MB), optionally a data:image/… URI"
    )
    capacity: int = Field(ge=1, le=MAX_CAPACITY, description="scans this target may take")
    expires_at: AwareDatetime | None = Field(
        default=None, description="e.g. a personal group QR's 7-day expiry"
    )
    enabled: bool = True

    _image_bytes: bytes | None = PrivateAttr(default=None)
    _image_type: str | None = PrivateAttr(default=None)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @model_validator(mode="after")
    def _one_kind(self) -> TargetIn:
        if (self.url is None) == (self.image is None):
            raise ValueError("give exactly one of url or image")
        if self.image is not None:
            self._image_bytes, self._image_type = decode_image(self.image)
        return self

    @property
    def image_bytes(self) -> bytes | None:
        return self._image_bytes

    @property
    def image_type(self) -> str | None:
        return self._image_type


class TargetCreate(TargetIn):
    position: int | None = Field(
        default=None, ge=0, description="0-based place in the order; appended when omitted"
    )


class TargetUpdate(StrictModel):
    """Partial update. Setting url replaces an image and vice versa."""

    label: str | None = Field(default=None, max_length=200)
    url: str | None = Field(default=None, max_length=MAX_URL)
    image: str | None = None
    capacity: int | None = Field(default=None, ge=1, le=MAX_CAPACITY)
    expires_at: AwareDatetime | None = None
    enabled: bool | None = None
    position: int | None = Field(default=None, ge=0)

    _image_bytes: bytes | None = PrivateAttr(default=None)
    _image_type: str | None = PrivateAttr(default=None)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @model_validator(mode="after")
    def _checks(self) -> TargetUpdate:
        if self.url is not None and self.image is not None:
            raise ValueError("give url or image, not both")
        for name in ("label", "capacity", "enabled", "position"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        if self.image is not None:
            self._image_bytes, self._image_type = decode_image(self.image)
        return self

    @property
    def image_bytes(self) -> bytes | None:
        return self._image_bytes

    @property
    def image_type(self) -> str | None:
        return self._image_type


def _check_channel(value: str | None) -> str | None:
    if value is not None and not _CHANNEL.fullmatch(value):
        raise ValueError("channel is a code: letters, digits, Chinese characters, '_', '-', '.'")
    return value


# Warn while the last usable target still has places (1 would warn only once none is left).
DEFAULT_ALERT_BELOW = 2


class LiveCodeCreate(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    slug: str | None = Field(default=None, description="custom path; random when omitted")
    channel: str | None = Field(default=None, max_length=64, description="渠道 code")
    alert_below: int = Field(
        default=DEFAULT_ALERT_BELOW,
        ge=0,
        le=MAX_TARGETS,
        description=(
            "alert when fewer usable targets than this remain (0: never). The default, 2, "
            "warns when the last usable group starts filling — while it still has places, in "
            "time to add a group before visitors see 群已满"
        ),
    )
    targets: list[TargetIn] = Field(default_factory=list, max_length=MAX_TARGETS)

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        if value is not None and not SLUG_RE.match(value):
            raise ValueError(
                "slug may hold letters, digits, '-' and '_' (1–63 characters, not starting with - or _)"
            )
        return value

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        return _check_channel(value)


class LiveCodeUpdate(StrictModel):
    """The slug is not here on purpose: printed QR codes point at it, so it never changes."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    channel: str | None = Field(default=None, max_length=64)
    alert_below: int | None = Field(default=None, ge=0, le=MAX_TARGETS)

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        return _check_channel(value)

    @model_validator(mode="after")
    def _not_null(self) -> LiveCodeUpdate:
        for name in ("name", "alert_below"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class Reorder(StrictModel):
    target_ids: list[str] = Field(min_length=1, max_length=MAX_TARGETS)


TargetStatus = Literal["active", "full", "expired", "disabled"]


class TargetOut(OutModel):
    id: str
    position: int
    label: str
    kind: Literal["url", "image"]
    url: str | None
    image_url: str | None
    image_type: str | None
    capacity: int
    scans: int
    remaining: int
    expires_at: datetime | None
    enabled: bool
    status: TargetStatus
    created_at: datetime


class LiveCodeOut(OutModel):
    id: str
    slug: str
    name: str
    channel: str | None
    short_url: str
    qr_url: str
    alert_below: int
    alerted_at: datetime | None
    usable_targets: int
    total_scans: int
    current_target_id: str | None
    targets: list[TargetOut]
    created_at: datetime


class AlertOut(OutModel):
    id: str
    live_code_id: str
    kind: str
    usable: int
    threshold: int
    created_at: datetime
    delivered_at: datetime | None
