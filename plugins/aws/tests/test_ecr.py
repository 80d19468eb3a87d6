"""The ecr registry: repository management and tokens from moto's ECR API, pushes to a registry standing in
for ECR's endpoint (moto has none) that accepts only moto's token."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shipway import dockerutil
from shipway.backends.base import BackendContext
from shipway.errors import AuthError, BackendError, NotFound
from shipway.testing.contracts import RegistryContract, assembled_image, unique
from shipway.testing.services import RegistryService, free_port
from shipway_aws import EcrRegistry, EcrSettings, ecr
from shipway_aws.testing import ACCOUNT, REGION, MotoService


def make_ecr(address: str, cache: Path, repository: str | None = None, **options: Any) -> EcrRegistry:
    settings = EcrSettings(
        kind="ecr", registry=address, account=ACCOUNT, repository=repository or f"r-{uuid.uuid4().hex[:8]}", **options
    )
    return EcrRegistry(settings, BackendContext(cache_dir=cache))


class TestEcrRegistry(RegistryContract):
    @pytest.fixture
    def registry(
        self, shipway_aws_env: MotoService, shipway_ecr_registry: RegistryService, shipway_cache: Path
    ) -> EcrRegistry:
        return make_ecr(shipway_ecr_registry.address, shipway_cache)

    @pytest.fixture
    def bad_registry(
        self, shipway_aws_env: MotoService, shipway_registry: RegistryService, shipway_cache: Path
    ) -> EcrRegistry:
        """An endpoint that does not accept this account's ECR token."""
        return make_ecr(shipway_registry.address, shipway_cache)


@pytest.fixture
def registry(shipway_aws_env: MotoService, shipway_ecr_registry: RegistryService, tmp_path: Path) -> EcrRegistry:
    return make_ecr(shipway_ecr_registry.address, tmp_path)


def token_calls(registry: EcrRegistry) -> list[dict[str, Any]]:
    """Record every GetAuthorizationToken the registry's ECR client sends from now on."""
    calls: list[dict[str, Any]] = []
    registry.ecr.meta.events.register(
        "provide-client-params.ecr.GetAuthorizationToken", lambda params, **_: calls.append(dict(params))
    )
    return calls


def engine_pushes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every push the Docker engine is asked to make from now on."""
    api = dockerutil.client().api
    original = api.push
    pushes: list[str] = []

    def counting(repository: str, tag: str | None = None, **kwargs: Any) -> Any:
        pushes.append(f"{repository}:{tag}")
        return original(repository, tag=tag, **kwargs)

    monkeypatch.setattr(api, "push", counting)
    return pushes


def test_the_repository_is_created_with_its_options(
    registry: EcrRegistry, shipway_aws_env: MotoService, shipway_tiny_image
) -> None:
    registry.push(shipway_tiny_image(), "v1")
    repo = shipway_aws_env.client("ecr").describe_repositories(repositoryNames=[registry.settings.repository])
    found = repo["repositories"][0]
    assert found["imageTagMutability"] == "IMMUTABLE"
    assert found["imageScanningConfiguration"] == {"scanOnPush": True}
    assert found["encryptionConfiguration"]["encryptionType"] == "AES256"


def test_repository_options_are_passed_to_ecr(
    shipway_aws_env: MotoService, shipway_ecr_registry: RegistryService, tmp_path: Path
) -> None:
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/shipway-test"
    registry = make_ecr(
        shipway_ecr_registry.address, tmp_path, immutable_tags=False, scan_on_push=False, encryption="KMS", kms_key=key
    )
    assert registry.ensure_repository() == "MUTABLE"
    found = shipway_aws_env.client("ecr").describe_repositories(repositoryNames=[registry.settings.repository])
    repo = found["repositories"][0]
    assert repo["imageScanningConfiguration"] == {"scanOnPush": False}
    assert repo["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": key}


def test_an_existing_repository_is_used_as_it_is(
    shipway_aws_env: MotoService, shipway_ecr_registry: RegistryService, tmp_path: Path
) -> None:
    name = unique("existing")
    shipway_aws_env.client("ecr").create_repository(repositoryName=name, imageTagMutability="MUTABLE")
    assert make_ecr(shipway_ecr_registry.address, tmp_path, repository=name).ensure_repository() == "MUTABLE"


def test_a_missing_repository_is_not_created_when_told_not_to(
    shipway_aws_env: MotoService, shipway_ecr_registry: RegistryService, tmp_path: Path, shipway_tiny_image
) -> None:
    registry = make_ecr(shipway_ecr_registry.address, tmp_path, create_repository=False)
    with pytest.raises(NotFound, match="does not exist"):
        registry.push(shipway_tiny_image(), "v1")


def test_the_same_image_under_an_existing_immutable_tag_is_not_pushed_again(
    registry: EcrRegistry, shipway_tiny_image, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = shipway_tiny_image()
    first = registry.push(image, "abc123-m1")
    pushes = engine_pushes(monkeypatch)
    again = registry.push(image, "abc123-m1")  # a re-run of the same commit
    assert again == first
    assert pushes == []


def test_another_image_under_an_existing_immutable_tag_is_refused(registry: EcrRegistry, shipway_tiny_image) -> None:
    first = registry.push(shipway_tiny_image(), "abc123-m1")
    with pytest.raises(BackendError, match="already holds another image and the repository's tags are immutable"):
        registry.push(shipway_tiny_image(), "abc123-m1")
    assert registry.resolve("abc123-m1") == first


def test_a_mutable_repository_moves_the_tag(
    shipway_aws_env: MotoService, shipway_ecr_registry: RegistryService, tmp_path: Path, shipway_tiny_image
) -> None:
    registry = make_ecr(shipway_ecr_registry.address, tmp_path, immutable_tags=False)
    first = registry.push(shipway_tiny_image(), "latest-build")
    second = registry.push(shipway_tiny_image(), "latest-build")
    assert second.digest != first.digest
    assert registry.resolve("latest-build") == second


def test_the_token_is_cached_until_it_expires(registry: EcrRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = token_calls(registry)
    registry.login()
    assert registry.credentials() == registry.credentials()
    assert len(calls) == 1
    assert calls[0] == {"registryIds": [ACCOUNT]}
    later = ecr._now() + ecr.TOKEN_LIFETIME - timedelta(minutes=1)  # inside the refresh margin
    monkeypatch.setattr(ecr, "_now", lambda: later)
    registry.login()
    assert len(calls) == 2


def test_a_refused_token_is_fetched_again_once(registry: EcrRegistry, shipway_tiny_image) -> None:
    calls = token_calls(registry)

    def stale_first(parsed: dict[str, Any], **_: Any) -> None:
        if len(calls) == 1:  # the first answer carries a token the registry no longer accepts
            stale = base64.b64encode(b"AWS:revoked-token").decode()
            parsed["authorizationData"][0]["authorizationToken"] = stale

    registry.ecr.meta.events.register("after-call.ecr.GetAuthorizationToken", stale_first)
    pushed = registry.push(shipway_tiny_image(), "refreshed")
    assert pushed.digest
    assert len(calls) == 2
    assert registry.credentials()["password"] != "revoked-token"  # type: ignore[index]


def test_an_assembled_image_goes_to_a_new_repository_with_a_refreshed_token(
    registry: EcrRegistry, shipway_aws_env: MotoService, shipway_tiny_image, tmp_path: Path
) -> None:
    """What `shipway run` does with a model layer it wrote: push_image, here with a revoked first token."""
    calls = token_calls(registry)

    def stale_first(parsed: dict[str, Any], **_: Any) -> None:
        if len(calls) == 1:
            parsed["authorizationData"][0]["authorizationToken"] = base64.b64encode(b"AWS:revoked").decode()

    registry.ecr.meta.events.register("after-call.ecr.GetAuthorizationToken", stale_first)
    image = assembled_image(shipway_tiny_image(), b"model bytes", tmp_path)
    pushed = registry.push_image(image, ["abc123-m1"])
    assert registry.resolve("abc123-m1") == pushed
    assert len(calls) == 2
    found = shipway_aws_env.client("ecr").describe_repositories(repositoryNames=[registry.settings.repository])
    assert found["repositories"][0]["imageTagMutability"] == "IMMUTABLE"
    again = registry.push_image(image, ["abc123-m1"])  # a re-run of the same commit
    assert again.digest == pushed.digest


def test_pull_credentials_are_the_ecr_token(registry: EcrRegistry, shipway_aws_env: MotoService) -> None:
    assert registry.credentials() == {
        "username": "AWS",
        "password": shipway_aws_env.ecr_password(),
        "serveraddress": registry.settings.registry,
    }


def test_an_unreachable_aws_api_is_one_clear_line(registry: EcrRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    fresh = EcrRegistry(registry.settings, registry.context)
    with pytest.raises(
        BackendError, match=r"cannot reach ECR registry .*: GetAuthorizationToken: EndpointConnectionError"
    ):
        fresh.login()


def test_no_aws_credentials_names_the_chain(registry: EcrRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    fresh = EcrRegistry(registry.settings, registry.context)
    with pytest.raises(AuthError, match="no AWS credentials found"):
        fresh.login()


def test_account_and_region_make_the_registry_address() -> None:
    settings = EcrSettings(kind="ecr", account="210987654321", region="eu-west-1", repository="digits-api")
    assert settings.address == "210987654321.dkr.ecr.eu-west-1.amazonaws.com"


def test_a_registry_uri_gives_account_and_region() -> None:
    settings = EcrSettings(kind="ecr", registry="210987654321.dkr.ecr.eu-west-1.amazonaws.com", repository="x")
    assert (settings.account, settings.region) == ("210987654321", "eu-west-1")


def test_settings_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="give account and region"):
        EcrSettings(kind="ecr", account="210987654321", repository="x")
    with pytest.raises(ValueError, match="remove username and password"):
        EcrSettings(kind="ecr", registry="r.example", repository="x", username="AWS", password="p")
    with pytest.raises(ValueError, match="kms_key needs encryption: KMS"):
        EcrSettings(kind="ecr", registry="r.example", repository="x", kms_key="alias/k")
