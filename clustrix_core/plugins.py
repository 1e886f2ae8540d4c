"""Plugin discovery: entry points in the ``clustrix`` group, loaded one by one in isolation.

Every hook is called through the manager's relay (``pm.hook.NAME(...)``), so pluggy's wrappers,
``tryfirst``/``trylast`` ordering and tracing work for every plugin."""

from __future__ import annotations

import logging
import os
import threading
from importlib import metadata
from typing import Any

import attrs
import pluggy

from .errors import PluginError
from .hookspecs import PROJECT, ClustrixSpecs
from .specs import SchedulerSpec, SerializerSpec, TransportSpec

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "clustrix"
DISABLE_ENV = "CLUSTRIX_DISABLE_PLUGINS"
KNOWN_PACKAGES = {
    "ssh": "clustrix-ssh",
    "slurm": "clustrix-slurm",
    "pbs": "clustrix-pbs",
    "torque": "clustrix-pbs",
    "sge": "clustrix-sge",
    "k8s": "clustrix-k8s",
    "kubernetes": "clustrix-k8s",
}


@attrs.frozen(kw_only=True)
class PluginInfo:
    """One loaded (or failed) plugin, as ``clustrix plugins`` shows it."""

    name: str
    distribution: str
    version: str
    status: str  # "ok", "failed: ...", "disabled"


@attrs.frozen(kw_only=True)
class Provider:
    """One provided name (scheduler, transport or serializer) and who provides it."""

    kind: str
    name: str
    spec: Any
    plugin: str
    distribution: str
    version: str


def disabled_plugins() -> set[str]:
    return {p.strip() for p in os.environ.get(DISABLE_ENV, "").split(",") if p.strip()}


class ClustrixPluginManager(pluggy.PluginManager):
    """pluggy manager with entry-point loading that isolates failures and a registry of backends."""

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.add_hookspecs(ClustrixSpecs)
        self.infos: list[PluginInfo] = []
        self._dists: dict[str, tuple[str, str]] = {}
        self._backends: dict[tuple[str, str], Provider] | None = None

    # ---------------------------------------------------------------- loading
    def register_plugin(
        self, plugin: object, name: str, *, distribution: str = "", version: str = ""
    ) -> None:
        self.register(plugin, name=name)
        self._dists[name] = (distribution, version)
        self.infos.append(
            PluginInfo(name=name, distribution=distribution, version=version, status="ok")
        )
        self._backends = None

    def unregister_plugin(self, name: str) -> None:
        plugin = self.get_plugin(name)
        if plugin is not None:
            self.unregister(plugin, name=name)
        self.infos = [i for i in self.infos if i.name != name]
        self._backends = None

    def load_builtins(self) -> None:
        from . import builtin

        self.register_plugin(
            builtin, "core", distribution="clustrix-core", version=_version("clustrix-core")
        )

    def load_entrypoints(self) -> None:
        disabled = disabled_plugins()
        for ep, dist, version in _entry_points():
            if ep.name in disabled:
                self.infos.append(
                    PluginInfo(name=ep.name, distribution=dist, version=version, status="disabled")
                )
                continue
            if self.get_plugin(ep.name) is not None:
                continue
            try:
                module = ep.load()
                self.register_plugin(module, ep.name, distribution=dist, version=version)
            except Exception as exc:  # a broken plugin must not break anything else
                logger.warning("clustrix plugin %r from %s failed to load: %s", ep.name, dist, exc)
                self.infos.append(
                    PluginInfo(
                        name=ep.name,
                        distribution=dist,
                        version=version,
                        status=f"failed: {type(exc).__name__}: {exc}",
                    )
                )

    # ---------------------------------------------------------------- backends
    def backends(self) -> dict[tuple[str, str], Provider]:
        """Every (kind, name) provided by a loaded plugin. Two providers of one name is an error."""
        if self._backends is not None:
            return self._backends
        found: dict[tuple[str, str], Provider] = {}
        for kind, hook in (
            ("scheduler", self.hook.clustrix_schedulers),
            ("transport", self.hook.clustrix_transports),
            ("serializer", self.hook.clustrix_serializers),
        ):
            for impl in hook.get_hookimpls():
                try:
                    specs = list(impl.function() or ())  # type: ignore[call-overload]
                except Exception as exc:
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} failed in {hook.name}: {exc}"
                    ) from exc
                dist, version = self._dists.get(impl.plugin_name, ("?", "?"))
                for spec in specs:
                    key = (kind, spec.name)
                    if key in found:
                        other = found[key]
                        raise PluginError(
                            f"two plugins provide the {kind} {spec.name!r}: {other.plugin!r} "
                            f"(distribution {other.distribution}) and {impl.plugin_name!r} "
                            f"(distribution {dist}); uninstall or disable one with {DISABLE_ENV}"
                        )
                    found[key] = Provider(
                        kind=kind,
                        name=spec.name,
                        spec=spec,
                        plugin=impl.plugin_name,
                        distribution=dist,
                        version=version,
                    )
        self._backends = found
        return found

    def find(self, kind: str, name: str) -> Any:
        backend = self.backends().get((kind, name))
        return backend.spec if backend else None

    def get(self, kind: str, name: str) -> Any:
        """The spec of an installed backend, or a :class:`PluginError` that says what to install."""
        spec = self.find(kind, name)
        if spec is not None:
            return spec
        installed = sorted(n for (k, n) in self.backends() if k == kind)
        package = KNOWN_PACKAGES.get(name, f"clustrix-{name}")
        failed = [i for i in self.infos if i.status.startswith("failed") and i.name == name]
        hint = (
            f" (plugin {name!r} from {failed[0].distribution} failed to load: {failed[0].status[8:]})"
            if failed
            else ""
        )
        if name in disabled_plugins():
            hint = f" (plugin {name!r} is disabled by {DISABLE_ENV})"
        raise PluginError(
            f"no {kind} named {name!r} is installed{hint}; installed {kind}s: {', '.join(installed) or 'none'}. "
            f"To use {name!r}, install the package {package!r} (pip install {package})"
        )

    def serializer_specs(self) -> list[SerializerSpec]:
        specs = [b.spec for (k, _), b in self.backends().items() if k == "serializer"]
        return sorted(specs, key=lambda s: (s.priority, s.name))


def _entry_points() -> list[tuple[metadata.EntryPoint, str, str]]:
    """(entry point, distribution name, version) of every ``clustrix`` entry point; the first
    distribution of a name on sys.path wins, as for imports (works on Python 3.9, whose entry
    points do not know their distribution)."""
    found = []
    seen: set[str] = set()
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or "?"
        if name in seen:
            continue
        seen.add(name)
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP:
                found.append((ep, name, dist.version))
    return found


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


_pm: ClustrixPluginManager | None = None
_pm_lock = threading.Lock()


def get_plugin_manager() -> ClustrixPluginManager:
    """The process-wide plugin manager, loaded on first use (never at import time)."""
    global _pm
    with _pm_lock:
        if _pm is None:
            pm = ClustrixPluginManager()
            pm.load_builtins()
            pm.load_entrypoints()
            _pm = pm
        return _pm


def reset_plugin_manager() -> None:
    """Drop the process-wide manager so the next use loads plugins again (tests, CLI)."""
    global _pm
    with _pm_lock:
        _pm = None


__all__ = [
    "ClustrixPluginManager",
    "PluginInfo",
    "Provider",
    "SchedulerSpec",
    "SerializerSpec",
    "TransportSpec",
    "get_plugin_manager",
    "reset_plugin_manager",
]
