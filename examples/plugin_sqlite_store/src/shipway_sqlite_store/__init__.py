"""shipway-sqlite-store: a writable model store in one SQLite database file."""

from shipway.hookspecs import hookimpl
from shipway_sqlite_store.store import SqliteModelStore, SqliteStoreSettings

# The version of shipway.testing's contracts this plugin's tests run; `shipway plugins` shows it.
SHIPWAY_CONTRACT_VERSION = 2
# The module holding its contract tests: `shipway plugins --check sqlite` runs it.
SHIPWAY_CONTRACT_TESTS = "shipway_sqlite_store.contract_tests"

__all__ = ["SHIPWAY_CONTRACT_TESTS", "SHIPWAY_CONTRACT_VERSION", "SqliteModelStore", "SqliteStoreSettings"]


@hookimpl
def shipway_register_model_stores(register):  # type: ignore[no-untyped-def]
    register(SqliteModelStore)
