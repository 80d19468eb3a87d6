"""shipway-aws: S3 model store, Elastic Container Registry, EKS."""

from shipway.hookspecs import hookimpl
from shipway_aws.ecr import EcrRegistry, EcrSettings
from shipway_aws.eks import EksOrchestrator, EksSettings
from shipway_aws.s3_store import S3Settings, S3Store

# The shipway.testing contract version these backends pass.
SHIPWAY_CONTRACT_VERSION = 2

__all__ = ["EcrRegistry", "EcrSettings", "EksOrchestrator", "EksSettings", "S3Settings", "S3Store"]


@hookimpl
def shipway_register_model_stores(register):  # type: ignore[no-untyped-def]
    register(S3Store)


@hookimpl
def shipway_register_registries(register):  # type: ignore[no-untyped-def]
    register(EcrRegistry)


@hookimpl
def shipway_register_orchestrators(register):  # type: ignore[no-untyped-def]
    register(EksOrchestrator)
