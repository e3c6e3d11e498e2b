"""Plugin discovery and the registry of what plugins provide.

Plugins are found through the `botbridge` entry-point group by stevedore and
registered into one pluggy PluginManager. Core's own built-ins (the stores)
are entry points of the `botbridge` distribution and load the same way; the
operator's allow-list (BOTBRIDGE_LOAD_PLUGINS) and block-list
(BOTBRIDGE_BLOCK_PLUGINS) apply to every other distribution.

A plugin that fails to import, has a misspelled hook, or registers a name
another plugin already took is reported in `Plugins.infos` (and by
`botbridge plugins` / `GET /v1/plugins`); it does not stop the host.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy
from stevedore import NamedExtensionManager

from botbridge import hookspecs
from botbridge.bot import BotBackend
from botbridge.channel import Channel
from botbridge.settings import Settings
from botbridge.store import StoreFactory

logger = logging.getLogger("botbridge.plugins")

ENTRY_POINT_GROUP = "botbridge"
CORE_DISTRIBUTION = "botbridge"
_CHANNEL_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_CONNECTOR_TYPE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_STORE_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]{0,31}$")


@dataclass
class PluginInfo:
    name: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    builtin: bool = False
    hooks: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    connector_types: list[str] = field(default_factory=list)
    store_schemes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        kinds = []
        if self.channels:
            kinds.append("channel")
        if self.connector_types:
            kinds.append("bot")
        if self.store_schemes:
            kinds.append("store")
        hooks = {h for h in self.hooks if h.startswith("on_")}
        if hooks:
            kinds.append("observer")
        return kinds

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "builtin": self.builtin,
            "kinds": self.kinds,
            "hooks": sorted(self.hooks),
            "channels": self.channels,
            "connector_types": self.connector_types,
            "store_schemes": self.store_schemes,
            "errors": self.errors,
        }


class _Extensions(NamedExtensionManager):  # type: ignore[type-arg]
    """stevedore, reading the entry points afresh on every discovery.

    stevedore keeps a process-wide list per namespace (and a disk cache keyed
    by path mtimes at 32-bit precision); a plugin installed after the first
    discovery in a process would stay invisible.
    """

    def list_entry_points(self) -> list[importlib.metadata.EntryPoint]:
        return list(importlib.metadata.entry_points(group=self.namespace))


class Plugins:
    """The plugin manager and the registries filled from it."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.channels: dict[str, type[Channel]] = {}
        self.bot_backends: dict[str, type[BotBackend]] = {}
        self.stores: dict[str, StoreFactory] = {}
        self.fakes: dict[tuple[str, str], Callable[[], Any]] = {}

    # --- loading ---

    @classmethod
    def discover(cls, settings: Settings | None = None) -> Plugins:
        settings = settings or Settings()
        plugins = cls()
        plugins.load_entry_points(settings.plugin_allow_list(), settings.plugin_block_list())
        if settings.trace_hooks:
            plugins.pm.trace.root.setwriter(logger.debug)
            plugins.pm.enable_tracing()
        plugins.collect()
        return plugins

    def load_entry_points(self, allow: set[str] | None = None, block: Iterable[str] = ()) -> None:
        blocked = set(block)
        wanted = []
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = entry_point.dist.name if entry_point.dist else None
            builtin = dist == CORE_DISTRIBUTION
            if not builtin and (entry_point.name in blocked or (allow is not None and entry_point.name not in allow)):
                continue
            info = self.infos.setdefault(entry_point.name, PluginInfo(name=entry_point.name))
            info.distribution = dist
            info.version = entry_point.dist.version if entry_point.dist else None
            info.module = entry_point.value
            info.builtin = builtin
            wanted.append(entry_point.name)

        def failed(_manager: Any, entry_point: Any, error: BaseException) -> None:
            info = self.infos.setdefault(entry_point.name, PluginInfo(name=entry_point.name))
            info.errors.append(f"import failed: {type(error).__name__}: {error}")
            logger.error("plugin %s failed to load: %s", entry_point.name, error)

        manager = _Extensions(
            ENTRY_POINT_GROUP,
            names=wanted,
            on_load_failure_callback=failed,
            on_missing_entrypoints_callback=lambda names: None,
        )
        for extension in manager:
            self.add(extension.plugin, extension.name)

    def add(self, plugin: Any, name: str, *, builtin: bool = False) -> PluginInfo:
        """Register a plugin object or module (tests use this for temporary plugins)."""
        info = self.infos.setdefault(name, PluginInfo(name=name, builtin=builtin))
        info.module = info.module or getattr(plugin, "__name__", type(plugin).__name__)
        try:
            self.pm.register(plugin, name=name)
            # check_pending on this plugin alone, so one misspelled hook
            # rejects its plugin and no other.
            for hook_name in dir(self.pm.hook):
                hook = getattr(self.pm.hook, hook_name)
                if hook_name.startswith("_") or hook.has_spec():
                    continue
                for impl in hook.get_hookimpls():
                    if impl.plugin is plugin and not impl.optionalhook:
                        raise pluggy.PluginValidationError(plugin, f"unknown hook {hook_name!r} in plugin {name!r}")
        except (pluggy.PluginValidationError, ValueError) as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            info.errors.append(f"rejected: {exc}")
            logger.error("plugin %s rejected: %s", name, exc)
            return info
        info.hooks = [impl.name for impl in self.pm.get_hookcallers(plugin) or []]
        return info

    # --- registries ---

    def collect(self) -> None:
        """Fill the registries by calling every registry hook, plugin by plugin."""
        self.pm.check_pending()
        self.channels.clear()
        self.bot_backends.clear()
        self.stores.clear()
        self.fakes.clear()
        self._collect("register_channels", self._register_channel)
        self._collect("register_bot_backends", self._register_bot)
        self._collect("register_stores", self._register_store)
        self._collect("register_fakes", self._register_fake)

    def _collect(self, hook_name: str, register: Callable[[PluginInfo, Any], Callable[..., None]]) -> None:
        hook = getattr(self.pm.hook, hook_name)
        # Built-ins first: a third-party plugin cannot take a core name.
        impls = sorted(hook.get_hookimpls(), key=lambda i: not self._is_builtin(i.plugin_name))
        for impl in impls:
            info = self.infos.setdefault(impl.plugin_name, PluginInfo(name=impl.plugin_name))
            kwargs = {"register": register(info, None)} if "register" in impl.argnames else {}
            try:
                impl.function(**kwargs)
            except Exception as exc:  # a broken plugin is reported, not fatal
                info.errors.append(f"{hook_name} failed: {type(exc).__name__}: {exc}")
                logger.exception("plugin %s: %s failed", impl.plugin_name, hook_name)

    def _is_builtin(self, name: str) -> bool:
        info = self.infos.get(name)
        return info is not None and info.builtin

    def _register_channel(self, info: PluginInfo, _: Any) -> Callable[..., None]:
        def register(channel_class: type[Channel]) -> None:
            name = getattr(channel_class, "name", None)
            if not (isinstance(channel_class, type) and issubclass(channel_class, Channel)):
                info.errors.append(f"register_channels: {channel_class!r} is not a Channel subclass")
            elif not isinstance(name, str) or not _CHANNEL_NAME.match(name):
                info.errors.append(f"register_channels: invalid channel name {name!r}")
            elif name in self.channels:
                info.errors.append(f"channel {name!r} is already provided by another plugin")
            else:
                self.channels[name] = channel_class
                info.channels.append(name)

        return register

    def _register_bot(self, info: PluginInfo, _: Any) -> Callable[..., None]:
        def register(bot_class: type[BotBackend]) -> None:
            type_name = getattr(bot_class, "type", None)
            if not (isinstance(bot_class, type) and issubclass(bot_class, BotBackend)):
                info.errors.append(f"register_bot_backends: {bot_class!r} is not a BotBackend subclass")
            elif not isinstance(type_name, str) or not _CONNECTOR_TYPE.match(type_name):
                info.errors.append(f"register_bot_backends: invalid connector type {type_name!r}")
            elif type_name in self.bot_backends:
                info.errors.append(f"connector type {type_name!r} is already provided by another plugin")
            else:
                self.bot_backends[type_name] = bot_class
                info.connector_types.append(type_name)

        return register

    def _register_store(self, info: PluginInfo, _: Any) -> Callable[..., None]:
        def register(scheme: str, factory: StoreFactory) -> None:
            if not isinstance(scheme, str) or not _STORE_SCHEME.match(scheme) or not callable(factory):
                info.errors.append(f"register_stores: invalid scheme {scheme!r} or factory")
            elif scheme in self.stores:
                info.errors.append(f"store scheme {scheme!r} is already provided by another plugin")
            else:
                self.stores[scheme] = factory
                info.store_schemes.append(scheme)

        return register

    def _register_fake(self, info: PluginInfo, _: Any) -> Callable[..., None]:
        def register(kind: str, name: str, factory: Callable[[], Any]) -> None:
            if kind not in ("channel", "bot") or not isinstance(name, str) or not callable(factory):
                info.errors.append(f"register_fakes: invalid fake {kind!r} {name!r}")
            elif (kind, name) in self.fakes:
                info.errors.append(f"a fake {kind} {name!r} is already provided by another plugin")
            else:
                self.fakes[(kind, name)] = factory

        return register

    # --- observers ---

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call an observer hook; a failing observer is logged, never propagated."""
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            try:
                impl.function(**{name: kwargs[name] for name in impl.argnames if name in kwargs})
            except Exception:
                logger.exception("observer %s of plugin %s failed", hook_name, impl.plugin_name)

    def describe(self) -> list[dict[str, Any]]:
        return [info.as_dict() for info in sorted(self.infos.values(), key=lambda i: i.name)]
