"""shipway-http-store: a read-only model store over plain HTTP(S)."""

from shipway.hookspecs import hookimpl
from shipway_http_store.store import HttpModelStore, HttpStoreSettings

# The version of shipway.testing's contracts these tests pass; `shipway plugins` shows it.
SHIPWAY_CONTRACT_VERSION = 2
# The module holding its contract tests: `shipway plugins --check http` runs it.
SHIPWAY_CONTRACT_TESTS = "shipway_http_store.contract_tests"

__all__ = ["SHIPWAY_CONTRACT_TESTS", "SHIPWAY_CONTRACT_VERSION", "HttpModelStore", "HttpStoreSettings"]


@hookimpl
def shipway_register_model_stores(register):  # type: ignore[no-untyped-def]
    register(HttpModelStore)
