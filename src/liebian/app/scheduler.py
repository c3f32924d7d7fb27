"""The in-process job scheduler: one background thread running periodic jobs.

Every job it runs is safe to run in several processes at once (conditional UPDATEs, claimed
rows), so two servers, or a server plus ``liebian jobs run`` from cron, never double-apply.
A failing job is logged and retried on its next tick; it never stops the thread or the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from liebian.app.runtime import Runtime
from liebian.kit.netguard import parse_networks

log = logging.getLogger("liebian.scheduler")


@dataclass
class PeriodicJob:
    name: str
    interval: float
    run: Callable[[], Any]
    runs: int = 0
    last_result: Any = None
    last_error: BaseException | None = None
    last_success: float | None = None  # time.monotonic() when a run last ended without error
    _due: float = field(default=0.0, repr=False)


class Scheduler:
    def __init__(self, jobs: list[PeriodicJob]) -> None:
        self.jobs = [j for j in jobs if j.interval > 0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="liebian-scheduler", daemon=True)

    def start(self) -> None:
        if self.jobs:
            self._thread.start()

    def lag(self) -> dict[str, float]:
        """Seconds each job is overdue (0 when on time): a job stuck, or one that keeps the
        thread from the others, shows here."""
        now = time.monotonic()
        return {job.name: max(0.0, now - job._due) if job.runs else 0.0 for job in self.jobs}

    def alive(self) -> bool:
        return not self.jobs or self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        # monotonic: a wall-clock jump must neither stall nor burst the jobs
        while not self._stop.is_set():
            now = time.monotonic()
            for job in self.jobs:
                if job._due <= now and not self._stop.is_set():
                    self._run(job)
                    job._due = time.monotonic() + job.interval
            wait = min(j._due for j in self.jobs) - time.monotonic()
            self._stop.wait(max(wait, 0.01))

    @staticmethod
    def _run(job: PeriodicJob) -> None:
        try:
            job.last_result = job.run()
            job.last_error = None
            job.last_success = time.monotonic()
        except Exception as exc:  # keep the thread alive; the job retries on its next tick
            job.last_error = exc
            log.exception("scheduled job %s failed", job.name)
        finally:
            job.runs += 1


def fission_job(runtime: Runtime) -> Callable[[], Any]:
    from liebian.campaigns.tasks import run_fission_jobs
    from liebian.kit.clock import utcnow

    return lambda: run_fission_jobs(runtime.sessions, utcnow())


def channels_job(runtime: Runtime) -> Callable[[], Any]:
    """Carry on channel sends nobody will call again: claims left by dead processes (lookup,
    then resend with the same key) and sends deferred by quiet hours (channels/service.py)."""
    from liebian.channels.service import recover

    return lambda: recover(runtime)


def people_job(runtime: Runtime) -> Callable[[], Any]:
    """Reconcile contacts' computed attributes from the event store (contacts/computed.py)."""
    from liebian.contacts.computed import reconcile_all
    from liebian.kit.clock import utcnow
    from liebian.kit.db import session_scope

    def run() -> int:
        if runtime.event_store is None:
            return 0
        with session_scope(runtime.sessions) as session:
            return reconcile_all(session, runtime.event_store, utcnow())

    return run


def delivery_policy(runtime: Runtime) -> Any:
    from liebian.webhooks.deliver import DeliveryPolicy

    settings = runtime.settings
    return DeliveryPolicy(
        max_attempts=settings.webhook_max_attempts,
        backoff_seconds=settings.webhook_backoff,
        timeout_seconds=settings.webhook_timeout,
        allow_private=settings.allow_private_webhooks,
        allowed_networks=parse_networks(settings.allowed_private_networks),
        lease_seconds=max(settings.webhook_lease, settings.webhook_timeout + 1),
    )


def webhook_job(runtime: Runtime, client: httpx.Client | None) -> Callable[[], Any]:
    from liebian.webhooks.deliver import deliver_due

    policy = delivery_policy(runtime)
    return lambda: deliver_due(runtime.sessions, runtime.cipher, policy, client=client)


def segments_job(runtime: Runtime) -> Callable[[], Any]:
    from liebian.segments.tasks import rebuild_job

    return rebuild_job(runtime)


def jobs_for(runtime: Runtime, client: httpx.Client | None = None) -> list[PeriodicJob]:
    """``client``: one pooled HTTP client for the deliverer (keep-alive to the receivers)."""
    from liebian.team.audit import audited

    settings = runtime.settings
    return [
        # Audited as "system" (decision 0028): what a job decides on its own about campaigns,
        # money and staff work. Deliveries, sends, rebuilds of derived state are not.
        PeriodicJob(
            "fission",
            settings.jobs_interval,
            audited("system", "system.fission", fission_job(runtime)),
        ),
        PeriodicJob("webhooks", settings.webhook_interval, webhook_job(runtime, client)),
        PeriodicJob("segments", settings.segments_rebuild_interval, segments_job(runtime)),
        PeriodicJob("channels", settings.jobs_interval, channels_job(runtime)),
        PeriodicJob(
            "people",
            settings.people_interval if settings.jobs_interval > 0 else 0,
            people_job(runtime),
        ),
        # Team: the audit log's retention (team/audit.py purge_expired), hourly.
        PeriodicJob(
            "audit_retention", 3600.0 if settings.jobs_interval > 0 else 0, audit_job(runtime)
        ),
        # WeCom connector: contacts' tag changes → corp tags (connectors/wecom/tags.py).
        PeriodicJob(
            "wecom_tags",
            settings.wecom_tag_push_interval if settings.jobs_interval > 0 else 0,
            wecom_tags_job(runtime),
        ),
        # WeCom connector: results of mass sends (sent / pending the staff member's
        # confirmation / failed) and recovery of group tasks (connectors/wecom/group_sends.py).
        PeriodicJob(
            "wecom_group_results",
            60.0 if settings.jobs_interval > 0 else 0,
            wecom_results_job(runtime),
        ),
        # Communities: date-derived tiers move as time passes (communities/tasks.py), hourly.
        PeriodicJob(
            "community_tiers",
            3600.0 if settings.jobs_interval > 0 else 0,
            audited("system", "system.community_tiers", community_tiers_job(runtime)),
        ),
        # Communities: the content calendar's due posts, once per group and day
        # (communities/calendar.py).
        PeriodicJob(
            "community_calendar",
            settings.jobs_interval,
            audited("system", "system.community_calendar", community_calendar_job(runtime)),
        ),
    ]


def community_calendar_job(runtime: Runtime) -> Callable[[], Any]:
    from liebian.communities.calendar import send_due

    return lambda: send_due(runtime)


def community_tiers_job(runtime: Runtime) -> Callable[[], Any]:
    from liebian.communities.tasks import offer_due_moves

    return lambda: offer_due_moves(runtime)


def audit_job(runtime: Runtime) -> Callable[[], Any]:
    from liebian.kit.db import session_scope
    from liebian.team.audit import purge_expired

    def run() -> int:
        with session_scope(runtime.sessions) as session:
            return purge_expired(session)

    return run


def wecom_results_job(runtime: Runtime) -> Callable[[], Any]:
    from liebian.connectors.wecom.group_sends import poll

    return lambda: poll(runtime)


def wecom_tags_job(runtime: Runtime) -> Callable[[], Any]:
    from liebian.connectors.wecom.tags import push_tag_changes

    return lambda: push_tag_changes(runtime)
