"""Connects the domains to the runtime: routers, the redirect app and background components.

Kept in one place so the whole process can be read top to bottom.
"""

from __future__ import annotations

import asyncio

import httpx

from liebian.app.lifecycle import Component
from liebian.app.runtime import Runtime
from liebian.app.scheduler import Scheduler, jobs_for
from liebian.events.hooks import HookRegistry, HookWorker, open_hooks
from liebian.events.ingest_pool import IngestPool
from liebian.events.spool import Flusher, Spool
from liebian.events.store.factory import open_event_store
from liebian.kit.ratelimit import Rate, limiter_for
from liebian.workspaces.key_cache import REVOKED_TOPIC, KeyCache


class FlusherComponent:
    """Moves spooled clicks and events into the event store in batches, in the background."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.flusher: Flusher | None = None

    async def start(self) -> None:
        spool, store = self.runtime.spool, self.runtime.event_store
        assert spool is not None and store is not None, "wire() opens both before start"
        budget = self.runtime.extras.get("duckdb_budget")
        self.flusher = Flusher(
            spool,
            store,
            interval=self.runtime.settings.flush_interval,
            defer=self.runtime.extras.get("defer_loads"),
            max_defer=self.runtime.settings.flush_max_defer,
            defer_budget=self.runtime.settings.flush_defer_budget,
            load_budget=budget.loading if budget is not None else None,
        )
        self.flusher.start()
        self.runtime.extras["flusher"] = self.flusher  # read by /readyz and /metrics

    async def stop(self) -> None:
        if self.flusher is not None:
            # The final flush may take a moment: keep the event loop free meanwhile.
            await asyncio.to_thread(self.flusher.stop)
            self.flusher = None


class IngestPoolComponent:
    """The processes that prepare large event batches off the serving process's GIL
    (events/ingest_pool.py), started with the first large batch; none with
    ``ingest_processes = 0``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.pool: IngestPool | None = None

    async def start(self) -> None:
        processes = self.runtime.settings.ingest_processes
        if processes > 0:
            self.pool = IngestPool(processes)
            self.runtime.extras["ingest_pool"] = self.pool

    async def stop(self) -> None:
        if self.pool is not None:
            self.runtime.extras.pop("ingest_pool", None)
            await asyncio.to_thread(self.pool.stop)
            self.pool = None


class HookWorkerComponent:
    """Applies the side effects of conversion events (campaigns, rewards, commissions and any
    other registered consumer) from the hooks spool, after the 202 (events/hooks.py)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.worker: HookWorker | None = None

    async def start(self) -> None:
        # The worker this component started is the one it stops, whatever the runtime's
        # extras hold by then (a second app built on the same runtime puts its own there).
        self.worker = self.runtime.extras["event_hooks_worker"]
        self.worker.start()

    async def stop(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            # The last batch may be mid-transaction: wait for it off the event loop.
            await asyncio.to_thread(worker.stop)


class SchedulerComponent:
    """Runs the fission jobs (expire groups and assists, settle rewards) and the webhook
    deliverer in one background thread (see app/scheduler.py)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.scheduler: Scheduler | None = None
        self._client: httpx.Client | None = None

    async def start(self) -> None:
        settings = self.runtime.settings
        if settings.webhook_interval > 0:
            # The deliverer's pooled client, when it runs: the same pinned, SSRF-checked
            # transport as a one-off delivery (webhooks/deliver.py, kit/netguard.py).
            from liebian.app.scheduler import delivery_policy
            from liebian.webhooks.deliver import delivery_client

            self._client = delivery_client(delivery_policy(self.runtime))
        self.scheduler = Scheduler(jobs_for(self.runtime, self._client))
        self.scheduler.start()
        self.runtime.extras["scheduler"] = self.scheduler  # read by /readyz and /metrics

    async def stop(self) -> None:
        if self.scheduler is not None:
            # A job may be mid-run (a webhook POST): wait for it off the event loop.
            await asyncio.to_thread(self.scheduler.stop)
            self.scheduler = None
        if self._client is not None:
            self._client.close()
            self._client = None


def wire(runtime: Runtime) -> list[Component]:
    # One limiter for every public endpoint of the process (kit/ratelimit.py).
    runtime.extras.setdefault("limiter", limiter_for(runtime.settings))
    runtime.extras.setdefault("routers", [])
    runtime.extras.setdefault("page_routers", [])
    from liebian.links.domains_api import router as domains_router
    from liebian.links.live_codes.api import router as live_codes_router
    from liebian.links.qr_api import router as qr_router

    runtime.extras["routers"] += [domains_router, live_codes_router, qr_router]
    # Fission: campaigns, rewards ledger, risk review, contacts, participant H5 pages.
    from liebian.campaigns.wiring import page_routers, routers

    runtime.extras["routers"] += routers()
    # Segments (人群): the condition language, membership kept current by the keeper below.
    from liebian.segments.api import router as segments_router

    runtime.extras["routers"].append(segments_router)
    # Journeys (旅程): definitions, versions, enrolment (automation/); executor below.
    from liebian.automation.api import router as journeys_router

    runtime.extras["routers"].append(journeys_router)
    # Webhooks: endpoints API, and the outbox writer in every session (publish → outbox row).
    from liebian.webhooks.api import router as webhooks_router
    from liebian.webhooks.outbox import install as install_outbox

    runtime.extras["routers"].append(webhooks_router)
    install_outbox(runtime.sessions)
    # WeCom connector: the connection/contact-way/send API and the public callback URL.
    from liebian.connectors.wecom.api import public_router as wecom_callback_router
    from liebian.connectors.wecom.api import router as wecom_router

    runtime.extras["routers"] += [wecom_router, wecom_callback_router]
    # Team: console sign-in, members, roles, second verification; the audit hook on every
    # session (team/audit.py), reading ones too (exports are GETs).
    from liebian.team.api import auth_router as team_auth_router
    from liebian.team.api import router as team_router
    from liebian.team.audit import install as install_audit

    runtime.extras["routers"] += [team_auth_router, team_router]
    install_audit(runtime.sessions)
    assert runtime.read_sessions is not None
    install_audit(runtime.read_sessions)
    # Fission actions → event store (spool lines written after their commit).
    from liebian.campaigns.fission_events import install as install_fission_events

    install_fission_events(runtime)
    runtime.extras["page_routers"] += page_routers()
    # Communities (社群): API, the public entry page /c/{id}, events, WeCom bus subscribers.
    from liebian.communities.wiring import install as install_communities

    install_communities(runtime)
    # Channels: configuration, send, opt-outs, staff tasks (API) and the unsubscribe page.
    from liebian.channels.api import router as channels_router
    from liebian.channels.pages import router as channels_pages

    runtime.extras["routers"].append(channels_router)
    runtime.extras["page_routers"].append(channels_pages)
    # Operator console (/admin): HTML shells that call the JSON API above.
    from liebian.web.console import router as console_router

    runtime.extras["page_routers"].append(console_router)
    key_cache = KeyCache(
        wrong_keys=Rate(
            runtime.settings.rate_limit_wrong_keys_per_ip, runtime.settings.rate_limit_period
        )
    )
    runtime.extras["key_cache"] = key_cache
    runtime.bus.subscribe(REVOKED_TOPIC, key_cache.clear)
    if runtime.event_store is None:
        runtime.event_store = open_event_store(
            runtime.settings.resolved_events_url,
            query_timeout=runtime.settings.query_timeout or None,
        )
    if runtime.spool is None:
        runtime.spool = Spool(runtime.settings.spool_dir)
    if "event_hooks" not in runtime.extras:
        # Side effects of events (conversions), applied after the 202 by the hooks worker;
        # the registry is where other parts add their consumers.
        from liebian.campaigns.event_hook import CampaignConversions
        from liebian.contacts.people_hook import PeopleConsumer

        registry = HookRegistry()
        # Contacts: aliases from events carrying both ids, $set attributes, orders/GMV.
        # First: it creates the batch's new contacts with their figures and leaves their
        # ids in the batch's memo, so the campaigns after it look none up (decision 0051).
        registry.register(PeopleConsumer(runtime.cipher))
        registry.register(CampaignConversions())
        # Journeys: event triggers, wait-for-event steps and goal conversions.
        from liebian.automation.wiring import register_events

        register_events(runtime, registry)
        hooks = open_hooks(runtime.settings.spool_dir, registry)
        runtime.extras["event_hooks"] = hooks
        runtime.extras["event_hooks_worker"] = HookWorker(
            hooks, runtime.sessions, marker_days=runtime.settings.hook_marker_days
        )
    # The scheduler starts after the flusher and so stops before it.
    components: list[Component] = [
        FlusherComponent(runtime),
        HookWorkerComponent(runtime),
        IngestPoolComponent(runtime),
        SchedulerComponent(runtime),
    ]
    # WeCom: welcomes of 联系我 ways sent right after the add callback (connectors/wecom).
    from liebian.connectors.wecom.welcome import install as install_wecom_welcome

    components.append(install_wecom_welcome(runtime))
    # Segments and rule tags follow events and tag/attribute changes (segments/tasks.py).
    from liebian.segments.tasks import KeeperComponent

    components.append(KeeperComponent(runtime))
    # Journeys: the durable step executor (automation/executor.py); off with
    # LIEBIAN_JOURNEYS_INTERVAL=0 when `liebian worker` processes run it instead.
    from liebian.automation.wiring import JourneysComponent

    components.append(JourneysComponent(runtime))
    # The lean redirect path (before the routers are mounted: it adds the link stats route).
    from liebian.redirect.app import install as install_redirect

    redirect_app = install_redirect(runtime)
    if runtime.settings.redis_url:
        # Scale mode: invalidations reach the other server processes (kit/bus_relay.py).
        from liebian.kit.bus_relay import RESYNC_TOPIC, RedisBusRelay

        runtime.bus.subscribe(RESYNC_TOPIC, key_cache.clear)
        runtime.bus.subscribe(RESYNC_TOPIC, lambda _payload: redirect_app.cache.clear())
        relay = RedisBusRelay(
            runtime.bus, runtime.settings.redis_url, prefix=runtime.settings.redis_prefix
        )
        runtime.extras["bus_relay"] = relay
        components.append(relay)
    return components
