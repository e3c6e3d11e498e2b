"""Everything the host holds while it runs, built once at start-up.

The runtime owns the store, the one shared HTTP client, the clock, the
secret box and one instance of each channel and bot plugin.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from botbridge.bot import BotBackend, BotSession, LateReplies
from botbridge.broadcast import Broadcast
from botbridge.cache import ReadCache
from botbridge.channel import WEBHOOK_VIA, Capabilities, Channel, SenderContext
from botbridge.clock import Clock, SystemClock
from botbridge.crypto import SecretBox, generate_secret, key_file_secret
from botbridge.engine import Engine, EngineSettings
from botbridge.errors import APIError, ConfigInvalid
from botbridge.http import create_http_client
from botbridge.keys import ApiKeys, reconcile
from botbridge.metrics import Metrics
from botbridge.models import Connector, Conversation, Sender
from botbridge.outbound import OutboundPolicy, UnsafeURL, urls_in, urls_in_credentials
from botbridge.plugins import Plugins
from botbridge.retention import Retention
from botbridge.rotation import check_secret_key
from botbridge.settings import Settings, SettingsInvalid
from botbridge.store import Store

logger = logging.getLogger("botbridge")


# First-party store plugins by the schemes they provide, to name the one to install.
STORE_DISTRIBUTIONS = {"redis": "botbridge-redis", "postgresql": "botbridge-postgres", "postgres": "botbridge-postgres"}


def open_store(settings: Settings, plugins: Plugins, clock: Clock) -> Store:
    scheme = urlsplit(settings.store).scheme
    factory = plugins.stores.get(scheme)
    if factory is None:
        known = ", ".join(f"{name}://" for name in sorted(plugins.stores)) or "none"
        hint = f": pip install {STORE_DISTRIBUTIONS[scheme]}" if scheme in STORE_DISTRIBUTIONS else ""
        # the scheme only: the URL may carry a password
        raise SettingsInvalid(
            f"botbridge: BOTBRIDGE_STORE {scheme}:// needs a store plugin that is not installed{hint}"
            f" (installed: {known})"
        )
    return factory(settings.store, clock)


def store_location(url: str) -> str:
    """The store's URL as a log may show it: never its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:…@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def secret_key_for(settings: Settings) -> str:
    """BOTBRIDGE_SECRET_KEY, or for local stores a key kept beside the data."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    parts = urlsplit(settings.store)
    if parts.scheme == "memory":
        return generate_secret()
    if parts.scheme == "sqlite":
        from botbridge.stores.sqlite import path_from_url

        path = path_from_url(settings.store)
        if path == ":memory:":
            return generate_secret()
        logger.warning("BOTBRIDGE_SECRET_KEY is not set; using a key file beside the database")
        return key_file_secret(Path(path + ".key"))
    raise ValueError("BOTBRIDGE_SECRET_KEY must be set for a shared store")


class Runtime:
    def __init__(
        self,
        settings: Settings,
        plugins: Plugins,
        store: Store,
        http: httpx.AsyncClient,
        clock: Clock,
        box: SecretBox,
    ) -> None:
        self.settings = settings
        self.plugins = plugins
        self.store = store
        self.http = http
        self.clock = clock
        self.box = box
        self.outbound = OutboundPolicy.from_settings(settings)
        self._channels: dict[str, Channel] = {}
        self._bots: dict[str, BotBackend] = {}
        self.metrics = Metrics()
        self.cache = ReadCache(store)
        self.keys = ApiKeys(store, clock)
        # Set at start when BOTBRIDGE_SECRET_KEY cannot decrypt the store's
        # secrets: the host is then not ready and runs no work.
        self.secret_problem: str | None = None
        self.retention = Retention(store, clock, settings.history_days)
        self.stream_broadcast = Broadcast()
        # Where an outer application mounts the host ("" at the root): given, or learnt from requests.
        self.root_path = ""
        self.root_path_given = False
        self.engine = Engine(
            self,
            EngineSettings(workers=settings.workers, event_workers=settings.event_workers, lease=settings.job_lease),
        )

    @classmethod
    def build(
        cls,
        settings: Settings | None = None,
        *,
        plugins: Plugins | None = None,
        store: Store | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
    ) -> Runtime:
        settings = settings or Settings()
        plugins = plugins or Plugins.discover(settings)
        clock = clock or SystemClock()
        store = store or open_store(settings, plugins, clock)
        http = http or create_http_client(settings)
        return cls(settings, plugins, store, http, clock, SecretBox(secret_key_for(settings)))

    async def start(self) -> None:
        await self.store.open()
        keys = self.settings.bootstrap_keys()
        done = await reconcile(self.store, self.clock, keys)
        if done.revoked:
            logger.warning(
                "revoked %d API key(s) no longer in BOTBRIDGE_API_KEYS: %s",
                len(done.revoked),
                ", ".join(f"{k.id} (account {k.account_id})" for k in done.revoked),
            )
        if not keys:
            logger.warning(
                "BOTBRIDGE_API_KEYS is empty: only keys stored earlier can call the API, "
                "and keys bootstrapped from it earlier are left as they are"
            )
        self.secret_problem = await check_secret_key(self.store, self.box)
        if self.secret_problem:
            # No workers: they would only fail every job and use up its retries.
            logger.error("%s; this host is not ready and runs no work until it has the right key", self.secret_problem)
            return
        await self.engine.start()
        self.retention.start()
        loaded = sorted(info["name"] for info in self.plugins.describe() if not info["errors"])
        logger.info(
            "host started: store %s, %d plugins (%s), %d workers, console %s",
            store_location(self.settings.store),
            len(loaded),
            ", ".join(loaded),
            self.settings.workers,
            "on at /console" if getattr(self.settings, "console", False) else "off",
        )

    def require_secrets(self) -> None:
        """Refuse (503) what needs stored secrets on a host whose key does not fit the store."""
        if self.secret_problem:
            raise APIError(
                "this host cannot decrypt the store's secrets; retry later",
                status_code=503,
                code="secret_key_mismatch",
                headers={"retry-after": "30"},
            )

    async def stop(self) -> None:
        await self.retention.stop()
        await self.engine.stop()
        plugins: list[Channel | BotBackend] = [*self._channels.values(), *self._bots.values()]
        for plugin in plugins:
            try:
                await plugin.aclose()
            except Exception:
                logger.exception("closing plugin %s failed", type(plugin).__name__)
        await self.http.aclose()
        await self.store.close()

    async def check_outbound(self, config: dict[str, Any], credentials: str | None = None) -> None:
        """422 naming the field if a URL a tenant set is one the host must not call.

        In-process fakes open no sockets, so this create-time check is the one
        that tells a test what a real host would refuse at connect time.
        """
        found = list(urls_in(config, "config"))
        if credentials:
            found += urls_in_credentials(credentials)
        for field, url in found:
            try:
                await self.outbound.check_url(url)
            except UnsafeURL as exc:
                raise ConfigInvalid(field, str(exc)) from None

    # --- plugins ---

    def channel(self, name: str) -> Channel:
        instance = self._channels.get(name)
        if instance is None:
            channel_class = self.plugins.channels.get(name)
            if channel_class is None:
                installed = ", ".join(sorted(self.plugins.channels)) or "none"
                raise ConfigInvalid("channel", f"unknown channel {name!r}; installed: {installed}")
            instance = self._channels[name] = channel_class(self.http, self.clock)
        return instance

    def bot(self, type_name: str) -> BotBackend:
        instance = self._bots.get(type_name)
        if instance is None:
            bot_class = self.plugins.bot_backends.get(type_name)
            if bot_class is None:
                installed = ", ".join(sorted(self.plugins.bot_backends)) or "none"
                raise ConfigInvalid("type", f"unknown connector type {type_name!r}; installed: {installed}")
            instance = self._bots[type_name] = bot_class(self.http, self.clock)
        return instance

    # --- contexts handed to plugins ---

    def webhook_path(self, sender: Sender) -> str:
        return f"/v1/webhooks/{sender.channel}/{sender.id}"

    def webhook_url(self, sender: Sender) -> str:
        """BOTBRIDGE_PUBLIC_URL (the outer application's base URL), where the host is mounted, the path."""
        return (self.settings.public_url or "") + self.root_path + self.webhook_path(sender)

    def capabilities(self, sender: Sender) -> Capabilities:
        """What the sender's channel can show (buttons, media, length) and whether carriers' rules apply."""
        return self.channel(sender.channel).capabilities(self.sender_context(sender))

    def sender_context(self, sender: Sender) -> SenderContext:
        self.require_secrets()
        return SenderContext(
            sender=sender,
            credentials=self.box.decrypt(sender.credentials_enc),
            webhook_secret=self.box.decrypt(sender.webhook_secret_enc),
            webhook_url=self.webhook_url(sender),
            claim=functools.partial(self._sender_claim, sender.id),
            siblings=functools.partial(self._sibling_contexts, sender),
        )

    async def webhook_siblings(self, sender: Sender) -> list[Sender]:
        """The account's senders of this channel that receive through this sender's webhook."""
        found: list[Sender] = []
        after: str | None = None
        while True:
            page = await self.store.list_senders(sender.account_id, limit=200, after=after)
            found += [
                s
                for s in page
                if s.id != sender.id and s.channel == sender.channel and s.config.get(WEBHOOK_VIA) == sender.id
            ]
            if len(page) < 200:
                return found
            after = page[-1].id

    async def _sibling_contexts(self, sender: Sender) -> list[SenderContext]:
        return [self.sender_context(s) for s in await self.webhook_siblings(sender)]

    async def _sender_claim(self, sender_id: str, key: str, ttl: float) -> bool:
        # A plugin's replay keys (nonces, event ids) live in the sender's own
        # namespace: one tenant's webhook can never use up another's.
        return await self.store.claim(f"sender:{sender_id}:{key}", ttl)

    def bot_session(
        self, connector: Connector, conversation: Conversation, deliver_late: LateReplies | None = None
    ) -> BotSession:
        self.require_secrets()
        session = BotSession(
            connector=connector,
            credentials=self.box.decrypt(connector.credentials_enc),
            conversation=conversation,
        )
        if deliver_late is not None:
            session.deliver_late = deliver_late
        return session

    def notify(self, hook: str, **kwargs: Any) -> None:
        self.plugins.notify(hook, **kwargs)


def api_error_from_config(exc: ConfigInvalid, prefix: str) -> APIError:
    """Re-root a plugin's field name under the request field it came from."""
    field = exc.field if exc.field.startswith(prefix) else f"{prefix}.{exc.field}"
    return ConfigInvalid(field, exc.reason)
