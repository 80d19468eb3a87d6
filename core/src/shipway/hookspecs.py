"""The hooks a shipway plugin may implement (pluggy project name ``shipway``).

A plugin is a module or object with functions named like the specs below and
decorated with :data:`hookimpl`. An implementation may accept fewer arguments
than its spec names, so specs can grow without breaking plugins. Plugins are
found through the entry-point group ``shipway``; the built-in backends register
through the very same hooks and entry points.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from shipway.domain import BuildRecord, Release, ReleaseRecord, StageResult

PROJECT = "shipway"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def shipway_register_model_stores(register: Callable[[type], None]) -> None:
    """Register model store backends.

    Called once, when the plugin manager loads plugins.

    :param register: call ``register(StoreClass)`` for each
        :class:`shipway.backends.base.ModelStore` subclass the plugin provides;
        the class's ``kind`` is the name users write as ``model_store.kind``.
    """


@hookspec
def shipway_register_registries(register: Callable[[type], None]) -> None:
    """Register image registry backends.

    Called once, when the plugin manager loads plugins.

    :param register: call ``register(RegistryClass)`` for each
        :class:`shipway.backends.base.Registry` subclass; its ``kind`` is what
        users write as ``registry.kind``.
    """


@hookspec
def shipway_register_orchestrators(register: Callable[[type], None]) -> None:
    """Register orchestrator backends.

    Called once, when the plugin manager loads plugins.

    :param register: call ``register(OrchestratorClass)`` for each
        :class:`shipway.backends.base.Orchestrator` subclass; its ``kind`` is
        what users write as ``orchestrator.kind``.
    """


@hookspec
def shipway_build_labels(build: BuildRecord) -> dict[str, str] | None:
    """Return extra OCI labels for the image about to be built.

    Called by ``shipway run`` before the build stage, once per build. Results of
    all plugins are merged; shipway's own labels (``org.opencontainers.image.*``,
    ``io.shipway.*``) cannot be overridden.

    :param build: the build record so far (source and model version are set).
    :return: a mapping of label names to values, or None.
    """


@hookspec
def shipway_render_manifests(release: Release, manifests: list[dict[str, Any]]) -> None:
    """Change the Kubernetes manifests of a release before they are validated and applied.

    Called by Kubernetes-based orchestrators (``kubernetes``, ``aks``) once per
    deploy, after rendering and before the user's extra manifests and patches;
    everything is then validated against the official schemas.

    :param release: the release being deployed (app, environment, image by digest, ...).
    :param manifests: the rendered manifests (dicts); edit, append or remove in place.
    """


@hookspec
def shipway_stage_finished(stage: StageResult, command: str) -> None:
    """Observe a finished stage (for example to notify a chat channel).

    Called after each stage of ``run``, ``release`` and ``rollback``, whether it passed or failed.

    :param stage: name, status (``ok``/``failed``/``skipped``), seconds and detail.
    :param command: ``"run"``, ``"release"`` or ``"rollback"``.
    """


@hookspec
def shipway_run_finished(record: BuildRecord) -> None:
    """Observe the build record of ``shipway run``.

    Called once at the end of ``shipway run``, successful or not.

    :param record: the complete build record (the JSON written to ``--output``).
    """


@hookspec
def shipway_release_finished(record: ReleaseRecord) -> None:
    """Observe the release record of ``shipway release`` or ``shipway rollback``.

    Called once at the end of either command, successful or not.

    :param record: the complete release record (the JSON written to ``--output``).
    """
