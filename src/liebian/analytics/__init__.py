"""Growth analytics over the event store: every query runs inside the engine's SQL."""

from liebian.analytics.counts import counts, new_vs_returning
from liebian.analytics.funnel import funnel
from liebian.analytics.retention import retention

__all__ = ["counts", "funnel", "new_vs_returning", "retention"]
