"""Growth analytics over the event store: every query runs inside the engine's SQL."""

from liebian.analytics.abtest import ab_readout
from liebian.analytics.attribution import attribution
from liebian.analytics.counts import counts, new_vs_returning
from liebian.analytics.export import export, flatten
from liebian.analytics.funnel import funnel
from liebian.analytics.link_stats import link_stats
from liebian.analytics.ltv import cac, ltv
from liebian.analytics.metrics import metrics
from liebian.analytics.retention import retention

__all__ = [
    "ab_readout",
    "attribution",
    "cac",
    "counts",
    "export",
    "flatten",
    "funnel",
    "link_stats",
    "ltv",
    "metrics",
    "new_vs_returning",
    "retention",
]
