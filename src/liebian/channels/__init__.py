"""Message channels: one ``send()`` over small adapters (webhook, WeCom robot, SMTP, SMS, staff),
exactly once per idempotency key, behind the guards every send respects (opt-out, caps, quiet
hours). See service.py and docs/decisions/0025-channels.md."""
