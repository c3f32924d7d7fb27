"""One settings class for the whole process (env prefix ``LIEBIAN_``).

Services never read the environment themselves: the boundary (CLI, app factory, job runner)
builds a :class:`Settings` and passes plain values inward.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIEBIAN_", extra="ignore")

    data_dir: Path = Field(default=Path("./liebian-data"))
    # Empty means the embedded default: SQLite (WAL) in the data directory.
    database_url: str = ""
    # Empty means the embedded default: a DuckDB file in the data directory.
    events_url: str = ""
    # Optional shared cache / counters for scale mode (several server processes).
    redis_url: str = ""
    # Prefix of every Redis key and channel liebian uses (several installs may share a Redis).
    redis_prefix: str = "lb:"
    # Reverse proxies / load balancers (CIDRs) whose X-Forwarded-For is believed, e.g.
    # LIEBIAN_TRUSTED_PROXIES="10.0.0.0/8,127.0.0.1" (or a JSON list). Empty: the socket peer
    # is the client, and X-Forwarded-For is ignored (anyone can send it).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Base URL used to build short links when a workspace has no healthy custom domain.
    base_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    # 32-byte key (hex or urlsafe base64) for AES-GCM of PII and for IP hashing. When unset, a
    # random key is generated once and kept in <data_dir>/secret.key (mode 0600), never in git.
    secret_key: str = ""
    default_timezone: str = "Asia/Shanghai"
    # Hosts that destinations may never point at (phishing, malware, our own admin, …).
    url_blocklist: list[str] = Field(default_factory=list)
    max_body_bytes: int = 16 * 1024 * 1024
    # Seconds between spool flushes into the event store.
    flush_interval: float = 1.0
    # While redirects arrive in a burst, click loads wait on disk (already durable) so they do
    # not compete with the redirects (events/spool.py, ClickBurst; decision 0046): for at most
    # ``flush_max_defer`` seconds, and only while what waits would load in at most
    # ``flush_defer_budget`` seconds once the burst is over.
    flush_max_defer: float = Field(default=120.0, ge=0)
    flush_defer_budget: float = Field(default=15.0, ge=0)
    # Processes beside the server that parse and check large event batches (a body of 96 KiB
    # or more), so that this work does not hold the serving process's GIL; started with the
    # first such body; 0: the request thread does it (events/ingest_pool.py, decision 0058).
    ingest_processes: int = Field(default=1, ge=0, le=16)
    # Buffer pool the embedded DuckDB may use while an analytics query runs in the server
    # (between queries it keeps 96 MB; events/store/duckdb_budget.py).
    analytics_memory_mb: int = 640
    # Seconds an analytics read may run before the event engine cancels it and the caller gets
    # 503 query_timeout (DuckDB: interrupt from a timer; ClickHouse: max_execution_time).
    # 0 means no limit.
    query_timeout: float = 20.0
    # Webhook targets on private/loopback addresses are refused (SSRF) unless this is set;
    # tests set it to talk to receivers on 127.0.0.1.
    allow_private_webhooks: bool = False
    # Private networks (CIDRs) that webhook targets and link destinations may point at, for
    # an intranet CRM say: LIEBIAN_ALLOWED_PRIVATE_NETWORKS="10.20.0.0/16,192.168.8.0/24".
    # Everything else private, loopback, link-local, multicast or reserved is refused (SSRF).
    allowed_private_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Seconds between runs of the fission jobs (expire groups and assists, settle rewards,
    # qualify retained invites); 0 turns the in-process scheduler off (cron runs
    # `liebian jobs run` instead).
    jobs_interval: float = 10.0
    # Seconds between reconciliations of contacts' computed attributes from the event store
    # (0 = off; also off while jobs_interval is 0).
    people_interval: float = 3600.0
    # Days the hooks worker keeps the marker of each applied event (event_hook_applied): a
    # replay or a client resend of an event id within this window changes nothing; older
    # markers are deleted (decision 0026). 0 keeps them forever.
    hook_marker_days: float = 7.0
    # Seconds between passes of the webhook deliverer over due deliveries.
    webhook_interval: float = 1.0
    # A delivery is given up (dead) after this many failed attempts; the wait between
    # attempts doubles from webhook_backoff seconds (30 s, 1 min, 2 min, … capped at 6 h).
    webhook_max_attempts: int = 8
    webhook_backoff: float = 30.0
    webhook_timeout: float = 10.0
    # A delivery claimed by a worker that died (SIGKILL mid-POST) is taken up again after this
    # many seconds; keep it above webhook_timeout.
    webhook_lease: float = 120.0
    poster_font: str = ""
    # Public endpoints (short links, live codes, /collect, participant pages): at most this
    # many requests per rate_limit_period seconds from one IP address, and from one visitor
    # (lb_vid cookie), bursts included; more get 429 with Retry-After. 0 turns one off. In
    # memory per process; shared through Redis when LIEBIAN_REDIS_URL is set. The IP limit
    # is generous because many phones share one address (carrier NAT, office Wi-Fi).
    rate_limit_per_ip: int = 600
    rate_limit_per_visitor: int = 120
    rate_limit_period: float = 60.0
    # API keys: after this many wrong (key-shaped, unknown) keys per rate_limit_period from one
    # address, keys the server does not already know get 429 there until the budget refills
    # (a key look-up is a database read; guessing keys is an attack). 0 turns it off.
    rate_limit_wrong_keys_per_ip: int = 30
    # Analytics queries per workspace: at most analytics_concurrency run at once in a process,
    # analytics_queue more wait for a place (holding no thread), and analytics_per_minute may
    # start per minute; beyond, 429 with Retry-After (an analytics query takes a core while the
    # redirect needs one: issue 9, decision 0040). 0 turns the rate off.
    analytics_concurrency: int = Field(default=2, ge=1)
    analytics_queue: int = Field(default=8, ge=0)
    analytics_per_minute: int = Field(default=120, ge=0)
    # Wrong passwords at one password-protected link from one IP: after this many within
    # password_lockout_seconds, further tries wait (one more per lockout/failures seconds).
    password_max_failures: int = 5
    password_lockout_seconds: float = 900.0
    # /metrics answers a request carrying "Authorization: Bearer <this>"; when empty, only
    # direct requests from the loopback interface (no X-Forwarded-For: not through a proxy).
    metrics_token: str = ""
    # /readyz says "not ready" when events wait longer than this in the spool while the
    # flusher fails (the disk fills meanwhile), or when a spool write failed this recently.
    ready_max_backlog_seconds: float = 300.0
    ready_write_error_seconds: float = 30.0
    # Segments and rule tags: seconds between full rebuilds that reconcile the incremental
    # membership (0: off; run a rebuild with the API or the keeper), and whether membership follows events
    # and tag/attribute changes as they happen.
    segments_rebuild_interval: float = 3600.0
    segments_live: bool = True
    # WeCom connector (connectors/wecom): the server API's base URL (tests point it at a
    # loopback fake), the seconds a callback's timestamp may be old before it is refused as a
    # replay, and the seconds a WeCom API call may take.
    wecom_api_base: str = "https://qyapi.weixin.qq.com"
    wecom_callback_max_age: float = 300.0
    wecom_timeout: float = 10.0
    # WeChat web authorization (网页授权) for participant sign-in (participants/): the hosts of
    # the authorize page and of the sns API (tests point both at a loopback counterpart), and
    # the seconds an sns call may take. The official account's AppID and AppSecret are each
    # workspace's own (stored encrypted, set through the API), never in settings or the repo.
    wechat_open_base: str = "https://open.weixin.qq.com"
    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_timeout: float = 10.0
    # Seconds between pushes of contacts' tag changes to WeCom's corp tags (0 = off; also off
    # while jobs_interval is 0).
    wecom_tag_push_interval: float = 30.0
    # Journeys (automation/executor.py): seconds the embedded executor sleeps when no step is
    # due (0: off, e.g. when separate `liebian worker` processes do the work), and how long a
    # claimed step is left to its worker before another may take it over.
    journeys_interval: float = 0.2
    journeys_lease: float = 60.0
    # PostgreSQL: a stopped worker's claimed steps are given back as soon as its connection is
    # gone from pg_stat_activity (decision 0043). Behind a transaction-pooling proxy (PgBouncer
    # in transaction mode) a connection is not a worker's: set False, claims then wait out
    # journeys_lease.
    journeys_release_dead_claims: bool = True
    # Executor loops per process, each claiming and marking on its own connection (0: 2 on
    # PostgreSQL, where a loop mostly waits on round trips and commits; 1 on SQLite, one
    # writer anyway). Decision 0048.
    journeys_lanes: int = 0
    # False: this server only turns triggers into enrolments; `liebian worker` runs the steps.
    journeys_executor: bool = True
    # Seconds between scans of date-attribute (birthday) and inactivity triggers.
    journeys_scan_interval: float = 300.0
    # After start-up, move every object built so far out of the garbage collector's way
    # (app/factory.py): no full-collection pauses in a request. Tests that build an app per
    # test turn it off, since each start then walks the whole test process's heap.
    gc_freeze: bool = True

    @field_validator("trusted_proxies", "allowed_private_networks", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [part for part in text.replace(",", " ").split() if part]
        return value

    @field_validator("trusted_proxies", "allowed_private_networks")
    @classmethod
    def _valid_proxies(cls, value: list[str]) -> list[str]:
        import ipaddress

        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not an IP address or CIDR") from exc
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'liebian.db').resolve()}"

    @property
    def resolved_events_url(self) -> str:
        if self.events_url:
            return self.events_url
        return str((self.data_dir / "events.duckdb").resolve())

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    def secret_bytes(self) -> bytes:
        """The process secret, loading or creating ``secret.key`` in the data directory."""
        if self.secret_key:
            return _decode_key(self.secret_key)
        path = self.data_dir / "secret.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return _decode_key(path.read_text().strip())


def _decode_key(text: str) -> bytes:
    import base64

    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if len(raw) != 32:
        raise ValueError("LIEBIAN_SECRET_KEY must be 32 bytes (64 hex characters)")
    return raw


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
