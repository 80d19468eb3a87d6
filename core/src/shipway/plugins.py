"""Loading plugins and the table of backend kinds they register.

Every plugin, the built-in backends included, is an entry point in group
``shipway``. ``SHIPWAY_PLUGINS`` restricts which third-party entry points load:
unset loads all, an empty value loads none, ``a,b`` loads only the entry points
(or distributions) named. The built-ins, shipped by the ``shipway``
distribution itself, always load.
"""

from __future__ import annotations

import importlib.metadata as md
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from shipway import hookspecs
from shipway.backends.base import Backend, ModelStore, Orchestrator, Registry
from shipway.errors import PluginError

GROUP = "shipway"
ENV_VAR = "SHIPWAY_PLUGINS"
CORE_DIST = "shipway"

SECTION_BASES: dict[str, type[Backend]] = {
    "model_store": ModelStore,
    "registry": Registry,
    "orchestrator": Orchestrator,
}
_REGISTER_HOOKS = {
    "model_store": "shipway_register_model_stores",
    "registry": "shipway_register_registries",
    "orchestrator": "shipway_register_orchestrators",
}
CONTRACT_VERSION = 2
"""The version of the backend contracts (``shipway.backends.base``, tested by ``shipway.testing.contracts``).

A plugin declares the one its contract tests ran against as ``SHIPWAY_CONTRACT_VERSION``;
``shipway plugins`` says when that is not this one.
"""
# Kinds we know a package for, so an unknown kind can say what to install.
KNOWN_PROVIDERS = {
    "azure_blob": "shipway-azure",
    "acr": "shipway-azure",
    "aks": "shipway-azure",
    "s3": "shipway-aws",
    "ecr": "shipway-aws",
    "eks": "shipway-aws",
    "swarm": "shipway-swarm",
    "kubernetes": "shipway-kubernetes",
}


@dataclass
class PluginInfo:
    """One loaded plugin: its entry point, distribution, kinds and hooks."""

    name: str
    dist: str | None
    version: str | None
    module: str
    builtin: bool
    kinds: dict[str, list[str]] = field(default_factory=dict)
    hooks: list[str] = field(default_factory=list)
    contract_version: int | None = None
    """The ``shipway.testing`` contract version the plugin declares (module ``SHIPWAY_CONTRACT_VERSION``)."""
    contract_tests: str | None = None
    """Module holding the plugin's contract test classes (``SHIPWAY_CONTRACT_TESTS``): ``plugins --check`` runs it."""


class PluginHost:
    """The pluggy manager plus the backend kinds every plugin registered."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._kinds: dict[str, dict[str, type[Backend]]] = {s: {} for s in SECTION_BASES}
        self._owner: dict[tuple[str, str], str] = {}

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def add(self, plugin: object, info: PluginInfo) -> None:
        """Register one plugin object and collect the backends it registers."""
        if info.name in self.plugins:
            raise PluginError(f'plugin "{info.name}" is registered twice')
        try:
            self.pm.register(plugin, name=info.name)
            # A hook implementation whose name matches no hookspec (a typo) is an error, not ignored.
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=info.name)
            raise PluginError(f'plugin "{info.name}": {exc}') from None
        self.plugins[info.name] = info
        info.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        for section, hook_name in _REGISTER_HOOKS.items():
            # Through pluggy's hook machinery (wrappers, tracing), for this plugin's implementation only.
            self.pm.subset_hook_caller(hook_name, remove_plugins=others)(register=self._register_for(section, info))
        declared = getattr(plugin, "SHIPWAY_CONTRACT_VERSION", None)
        info.contract_version = declared if isinstance(declared, int) else None
        tests = getattr(plugin, "SHIPWAY_CONTRACT_TESTS", None)
        info.contract_tests = tests if isinstance(tests, str) else None

    def _register_for(self, section: str, info: PluginInfo) -> Callable[[type], None]:
        base = SECTION_BASES[section]

        def register(cls: type) -> None:
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise PluginError(
                    f'plugin "{info.name}" registered {cls!r} as a {section}, '
                    f"but it is not a subclass of {base.__module__}.{base.__name__}"
                )
            kind = getattr(cls, "kind", None)
            if not isinstance(kind, str) or not kind:
                raise PluginError(f'plugin "{info.name}": {cls.__name__} has no `kind`')
            owner = self._owner.get((section, kind))
            if owner is not None:
                raise PluginError(f'{section} kind "{kind}" is registered by both "{owner}" and "{info.name}"')
            self._kinds[section][kind] = cls
            self._owner[(section, kind)] = info.name
            info.kinds.setdefault(section, []).append(kind)

        return register

    def kinds(self, section: str) -> dict[str, type[Backend]]:
        return dict(self._kinds[section])

    def backend_class(self, section: str, kind: str, where: str = "") -> type[Backend]:
        """The class for ``kind``, or a PluginError listing what is available and what to install."""
        table = self._kinds[section]
        if kind in table:
            return table[kind]
        prefix = f"{where}: {section}.kind: " if where else ""
        available = ", ".join(sorted(table)) or "none"
        hint = (
            f"; it is provided by {KNOWN_PROVIDERS[kind]} (pip install {KNOWN_PROVIDERS[kind]})"
            if kind in KNOWN_PROVIDERS
            else ""
        )
        raise PluginError(
            f"{prefix}{section} '{kind}' is not available (plugin may not be installed){hint}. Available: {available}"
        )


def load(environ: Mapping[str, str] | None = None, entry_points: Iterable[md.EntryPoint] | None = None) -> PluginHost:
    """Build a :class:`PluginHost` from the installed entry points (``entry_points`` overrides, for tests)."""
    env = os.environ if environ is None else environ
    wanted = _wanted(env.get(ENV_VAR))
    host = PluginHost()
    eps = list(md.entry_points(group=GROUP) if entry_points is None else entry_points)
    for ep in sorted(eps, key=lambda e: (not _is_core(e), e.name)):
        dist = ep.dist.name if ep.dist else None
        builtin = _is_core(ep)
        if not builtin and wanted is not None and ep.name not in wanted and (dist or "") not in wanted:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(f'Error importing plugin "{ep.name}": {type(exc).__name__}: {exc}') from exc
        host.add(
            plugin,
            PluginInfo(
                name=ep.name,
                dist=dist,
                version=ep.dist.version if ep.dist else None,
                module=ep.value,
                builtin=builtin,
            ),
        )
    return host


def _is_core(ep: md.EntryPoint) -> bool:
    return ep.dist is not None and ep.dist.name == CORE_DIST and ep.value.startswith("shipway.")


def _wanted(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}
