"""The routers of the fission domains, for ``app.wiring`` to mount (one import there)."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    from liebian.campaigns.api import router as campaigns_router
    from liebian.campaigns.design_api import router as design_router
    from liebian.campaigns.lifecycle_api import router as lifecycle_router
    from liebian.contacts.api import router as contacts_router
    from liebian.participants.api import router as sign_in_settings_router
    from liebian.rewards.api import router as rewards_router
    from liebian.rewards.payouts.api import router as payouts_router
    from liebian.risk.api import router as risk_router

    return [
        campaigns_router, lifecycle_router, design_router, rewards_router, payouts_router, risk_router,
        contacts_router, sign_in_settings_router,
    ]  # fmt: skip


def page_routers() -> list[APIRouter]:
    from liebian.campaigns.design_api import page_router as preview_router

    try:
        from liebian.campaigns.pages import router as pages_router
        from liebian.campaigns.sign_in_pages import router as sign_in_router
    except ImportError:  # pages not built yet
        return [preview_router]
    # Sign-in first: /p/{campaign}/signin is not an invite code.
    return [sign_in_router, pages_router, preview_router]
