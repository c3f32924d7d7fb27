"""The poster designer (海报设计): a campaign's poster text, colours and background image.

A design is stored on the campaign (``campaigns.poster``); ``None`` means the defaults (a
海报裂变 campaign's own config colours and headline, else the house style with the campaign's
name). Every poster — the participant's (pages and API) and the operator's preview — is drawn
from :func:`poster_for`, so what the operator previews is what a participant saves.

Background images are uploaded once, checked (PNG, JPEG or WebP by their content, not by
their name; ≤ 5 MB; 300–4096 px a side and ≤ 16.7 M pixels, checked from the header before
anything is decoded), decoded in full, re-encoded as JPEG (nothing of the original file —
EXIF, ICC, trailing bytes — survives) and stored under
``<data_dir>/uploads/posters/<workspace>/<sha256>.jpg``: the name is the content's hash, never
anything the caller sent, and a design may only name a file of its own workspace.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import Field, ValidationError, field_validator
from sqlalchemy.orm import Session

from liebian.campaigns import service
from liebian.campaigns.lint import LintWarning, lint_fields
from liebian.campaigns.models import Campaign
from liebian.campaigns.poster import PosterContent, PosterTemplate, render_poster
from liebian.campaigns.schemas import HexColor, PosterConfig
from liebian.kit.auth import Principal, Role
from liebian.kit.clock import utcnow
from liebian.kit.errors import Conflict, DomainError, Invalid
from liebian.kit.schemas import StrictModel

MAX_UPLOAD_BYTES: Final = 5 * 1024 * 1024
MIN_SIDE: Final = 300
MAX_SIDE: Final = 4096
MAX_PIXELS: Final = 4096 * 4096
UPLOAD_TYPES: Final = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
_ASSET = re.compile(r"^[0-9a-f]{64}\.jpg$")
SAMPLE_NICKNAME: Final = "示例用户"


class PosterDesign(StrictModel):
    """What the operator designs. Empty text falls back to the campaign (name, share copy)."""

    headline: str = Field(default="", max_length=40, description="大标题; empty = campaign name")
    body: str = Field(default="", max_length=200, description="正文; empty = share copy")
    caption: str = Field(default="长按识别二维码", max_length=20)
    background_color: HexColor = "#FFF4E6"
    gradient_to: HexColor | None = Field(default="#FFD8A8", description="null = solid colour")
    text_color: HexColor = "#3B2A1A"
    accent_color: HexColor = "#E8590C"
    background_image: str | None = Field(
        default=None,
        description="an uploaded background's name (from POST …/poster/background); "
        "covers the colours when set",
    )

    @field_validator("background_image")
    @classmethod
    def _asset_name(cls, value: str | None) -> str | None:
        if value is not None and not _ASSET.match(value):
            raise ValueError("must be a name returned by POST /campaigns/{id}/poster/background")
        return value


class UnsupportedImage(DomainError):
    status = 415
    code = "unsupported_image_type"


class ImageTooLarge(DomainError):
    status = 413
    code = "image_too_large"


@dataclass(frozen=True, slots=True)
class StoredImage:
    name: str
    width: int
    height: int
    bytes: int


def uploads_dir(data_dir: Path, workspace_id: str) -> Path:
    return data_dir / "uploads" / "posters" / workspace_id


def default_design(campaign: Campaign) -> PosterDesign:
    config = service.config_of(campaign)
    if isinstance(config, PosterConfig):
        return PosterDesign(
            headline=config.headline, body=config.body, background_color=config.background_color,
            gradient_to=config.gradient_to, text_color=config.text_color,
        )  # fmt: skip
    return PosterDesign()


def design_of(campaign: Campaign) -> PosterDesign:
    if campaign.poster:
        return PosterDesign.model_validate(campaign.poster)
    return default_design(campaign)


def parse_design(raw: dict[str, Any]) -> PosterDesign:
    try:
        return PosterDesign.model_validate(raw)
    except ValidationError as exc:
        raise service.validation_to_invalid(exc, prefix="poster") from exc


def lint_design(campaign: Campaign, design: PosterDesign) -> list[LintWarning]:
    """The poster's own text, linted like the share copy (诱导分享 wording)."""
    return lint_fields([("poster.headline", design.headline), ("poster.body", design.body)])


def _background_path(data_dir: Path, workspace_id: str, design: PosterDesign) -> str | None:
    if design.background_image is None:
        return None
    path = uploads_dir(data_dir, workspace_id) / design.background_image
    return str(path) if path.is_file() else None


def poster_for(
    campaign: Campaign, data_dir: Path, design: PosterDesign | None = None
) -> tuple[PosterTemplate, str, str, str]:
    """(template, headline, body, caption) of the campaign's poster: the stored design unless
    ``design`` (a preview of unsaved edits) is given."""
    design = design or design_of(campaign)
    config = service.config_of(campaign)
    size = (config.width, config.height) if isinstance(config, PosterConfig) else (750, 1334)
    template = PosterTemplate(
        width=size[0], height=size[1],
        background_image=_background_path(data_dir, campaign.workspace_id, design),
        background_color=design.background_color, gradient_to=design.gradient_to,
        text_color=design.text_color, accent_color=design.accent_color,
    )  # fmt: skip
    headline = design.headline or campaign.name[:40]
    body = design.body or campaign.share_text
    return template, headline, body, design.caption


def render_for(
    campaign: Campaign,
    data_dir: Path,
    *,
    url: str,
    nickname: str | None,
    font_path: str | None,
    design: PosterDesign | None = None,
) -> bytes:
    template, headline, body, caption = poster_for(campaign, data_dir, design)
    content = PosterContent(
        url=url,
        headline=headline,
        body=body,
        nickname=nickname,
        caption=caption or "长按识别二维码",
    )
    return render_poster(template, content, font_path=font_path)


def save_design(
    session: Session, principal: Principal, campaign_id: str, raw: dict[str, Any], data_dir: Path
) -> tuple[Campaign, PosterDesign, list[LintWarning]]:
    """Store a design (logged as ``poster``). Lint errors refuse it while the campaign is live,
    as for the share copy; warnings are returned."""
    principal.require(Role.operator)
    campaign = service.get(session, principal.workspace_id, campaign_id)
    design = parse_design(raw)
    if campaign.status == "ended":
        raise Conflict("an ended campaign cannot be edited; duplicate it", code="campaign_ended")
    if design.background_image is not None and (
        _background_path(data_dir, campaign.workspace_id, design) is None
    ):
        raise Invalid(
            "background_image is not an image uploaded to this workspace; upload it first",
            code="unknown_background_image",
            details={"field": "poster.background_image"},
        )
    findings = lint_design(campaign, design)
    if campaign.status in ("active", "paused"):
        service.require_clean_copy(findings)
    before = design_of(campaign).model_dump()
    after = design.model_dump()
    changed = sorted(k for k in after if before.get(k) != after.get(k))
    if changed:
        campaign.poster = after
        campaign.updated_at = utcnow()
        service.record_change(
            session, principal, campaign, "poster",
            before={k: before.get(k) for k in changed}, after={k: after[k] for k in changed},
        )  # fmt: skip
        session.flush()
    return campaign, design, findings


def store_background(
    data_dir: Path, workspace_id: str, raw: bytes, content_type: str
) -> StoredImage:
    """Check an uploaded background and store it re-encoded; the caller's bytes are never
    written as they came."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "image/jpg":
        media = "image/jpeg"
    if media not in UPLOAD_TYPES:
        raise UnsupportedImage(
            f"upload a PNG, JPEG or WebP image (Content-Type image/png, image/jpeg or "
            f"image/webp), not {media or 'nothing'}",
            details={"field": "content-type", "allowed": sorted(UPLOAD_TYPES)},
        )
    if len(raw) > MAX_UPLOAD_BYTES:
        raise ImageTooLarge(
            f"the image is {len(raw) // 1024} KB; upload at most {MAX_UPLOAD_BYTES // 1024 // 1024} MB",
            details={"max_bytes": MAX_UPLOAD_BYTES},
        )
    if not raw:
        raise Invalid("the request body is empty: send the image's bytes", code="invalid_image")
    try:
        with Image.open(io.BytesIO(raw), formats=tuple(set(UPLOAD_TYPES.values()))) as src:
            fmt = src.format or ""
            width, height = src.size
            if fmt != UPLOAD_TYPES[media]:
                raise Invalid(
                    f"the file is {fmt or 'not an image'}, but was sent as {media}",
                    code="invalid_image", details={"field": "content-type", "detected": fmt},
                )  # fmt: skip
            _check_size(width, height)
            src.load()  # decodes fully: a truncated or corrupt file fails here
            upright = ImageOps.exif_transpose(src)
            rgb = upright.convert("RGB")
            width, height = rgb.size
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
        raise Invalid(
            "the file is not a readable PNG, JPEG or WebP image",
            code="invalid_image", details={"field": "body"},
        ) from None  # fmt: skip
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=88, optimize=True)
    data = out.getvalue()
    name = hashlib.sha256(data).hexdigest() + ".jpg"
    folder = uploads_dir(data_dir, workspace_id)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if not target.is_file():
        # Write then rename: a reader never sees half a file, a crash leaves no partial one.
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return StoredImage(name=name, width=width, height=height, bytes=len(data))


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_PIXELS or width > MAX_SIDE or height > MAX_SIDE:
        raise Invalid(
            f"the image is {width}×{height} px; at most {MAX_SIDE} px a side",
            code="image_dimensions", details={"width": width, "height": height, "max_side": MAX_SIDE},
        )  # fmt: skip
    if width < MIN_SIDE or height < MIN_SIDE:
        raise Invalid(
            f"the image is {width}×{height} px; a poster background needs at least "
            f"{MIN_SIDE} px a side (750×1334 fits best)",
            code="image_dimensions", details={"width": width, "height": height, "min_side": MIN_SIDE},
        )  # fmt: skip
