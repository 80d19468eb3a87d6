"""shipway-azure: Azure Blob Storage model store, Azure Container Registry, AKS."""

from shipway.hookspecs import hookimpl
from shipway_azure.acr import AcrRegistry, AcrSettings
from shipway_azure.aks import AksOrchestrator, AksSettings
from shipway_azure.blob_store import AzureBlobSettings, AzureBlobStore

# The shipway.testing contract version these backends pass.
SHIPWAY_CONTRACT_VERSION = 2

__all__ = ["AcrRegistry", "AcrSettings", "AksOrchestrator", "AksSettings", "AzureBlobSettings", "AzureBlobStore"]


@hookimpl
def shipway_register_model_stores(register):  # type: ignore[no-untyped-def]
    register(AzureBlobStore)


@hookimpl
def shipway_register_registries(register):  # type: ignore[no-untyped-def]
    register(AcrRegistry)


@hookimpl
def shipway_register_orchestrators(register):  # type: ignore[no-untyped-def]
    register(AksOrchestrator)
