"""The http store: the read-only store contract (shipped in the package, see contract_tests.py) plus specifics."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from shipway.backends.base import BackendContext
from shipway.errors import BackendError
from shipway.plugins import PluginHost
from shipway_http_store import HttpModelStore, HttpStoreSettings
from shipway_http_store.contract_tests import TestHttpStore  # noqa: F401 - the contract suite, collected here


def test_unreachable_server_names_the_url(tmp_path: Path) -> None:
    settings = HttpStoreSettings(kind="http", url="http://127.0.0.1:9/none", retries={"attempts": 2, "backoff": 0.05})
    store = HttpModelStore(settings, BackendContext(cache_dir=tmp_path))
    where = "cannot reach http store http://127.0.0.1:9/none: GET http://127.0.0.1:9/none/m/index.json"
    with pytest.raises(BackendError, match=re.escape(where)):
        store.versions("m")


def test_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="must start with http"):
        HttpStoreSettings(kind="http", url="ftp://example.com")


def test_registered_through_its_entry_point(shipway_load_plugins: Callable[..., PluginHost]) -> None:
    host = shipway_load_plugins("shipway-http-store")  # the built-ins and this distribution, as shipway loads them
    assert host.kinds("model_store")["http"] is HttpModelStore
    assert set(host.kinds("model_store")) == {"local", "http"}  # no other third-party plugin loaded
    info = host.plugins["http_store"]
    assert (info.dist, info.builtin, info.contract_version) == ("shipway-http-store", False, 2)
