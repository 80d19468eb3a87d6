"""boto3 sessions and error wording shared by the AWS backends.

Credentials come only from the boto3 chain: environment variables, a named
profile, web identity (IRSA), the container or instance role. The endpoint of
every service follows the SDK's own settings too (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_S3``, ...), which is how the local stand-ins are reached.
"""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from shipway.errors import AuthError, BackendError
from shipway.retry import RetrySettings

CREDENTIAL_HELP = "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an instance, task or IRSA role"
_LITERAL_CREDENTIALS = (
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "access_key",
    "access_key_id",
    "secret_key",
    "secret_access_key",
    "session_token",
)


class NoLiteralCredentials:
    """Settings mixin: AWS keys in the YAML file are refused with a pointer to the boto3 chain."""

    @model_validator(mode="before")
    @classmethod
    def _no_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if isinstance(key, str) and key.lower() in _LITERAL_CREDENTIALS:
                    raise ValueError(
                        f"{key}: AWS credentials never go in the file; they come from the boto3 chain "
                        f"({CREDENTIAL_HELP})"
                    )
        return data


def session(region: str | None = None, profile: str | None = None) -> Any:
    """A boto3 Session for ``profile`` (default chain when None) in ``region``."""
    import boto3
    import botocore.exceptions

    try:
        return boto3.session.Session(region_name=region, profile_name=profile)
    except botocore.exceptions.ProfileNotFound:
        raise AuthError(f"AWS profile {profile!r} is not in the AWS config files") from None


def botocore_config(policy: RetrySettings, **options: Any) -> Any:
    """A botocore Config with the backend's ``retries`` policy: its attempts and timeouts, the SDK's standard mode.

    botocore retries connection errors, timeouts, 5xx and throttling answers with
    exponential backoff and jitter (its own base: 50 ms, 1 s when throttled, at
    most 20 s) and honours ``x-amz-retry-after``; it cannot bound the total time,
    so ``max_seconds`` does not apply to AWS calls (attempts and timeouts bound them).
    """
    from botocore.config import Config

    return Config(
        retries={"total_max_attempts": policy.attempts, "mode": "standard"},
        connect_timeout=policy.connect_timeout,
        read_timeout=policy.read_timeout,
        **options,
    )


def credential_source(sess: Any) -> str:
    """Where the chain found credentials (``env``, ``shared-credentials-file``, ``iam-role``...), never the key."""
    creds = sess.get_credentials()
    return f"AWS credentials from {creds.method}" if creds is not None else "no AWS credentials"


def error_code(exc: Any) -> str:
    """The AWS error code of a botocore ClientError (``NoSuchBucket``, ``AccessDenied``...)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: Any) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def translate(exc: BaseException, where: str, denied_hint: str) -> BackendError | None:
    """One clear line for the errors every AWS call can meet, or None when the caller must decide.

    ``where`` names the resource (``S3 bucket models in eu-west-1``); ``denied_hint`` the
    IAM actions the role needs.
    """
    import botocore.exceptions as bx

    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return AuthError(f"{where}: no AWS credentials found: {CREDENTIAL_HELP}")
    if isinstance(exc, bx.NoRegionError):
        return BackendError(f"{where}: no AWS region: set region in the file or AWS_REGION")
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ReadTimeoutError):
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url", "")
        return BackendError(
            f"cannot reach {where}: {type(exc).__name__} ({endpoint}): check the region and the endpoint "
            "(endpoint_url of an s3 section, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>) and that the service "
            "answers there"
        )
    if isinstance(exc, bx.TokenRetrievalError | bx.SSOError):
        return AuthError(f"{where}: AWS credentials could not be refreshed: {type(exc).__name__}")
    if isinstance(exc, bx.ClientError):
        code = error_code(exc)
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "UnrecognizedClientException",
                    "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException"):  # fmt: skip
            return AuthError(f"{where}: AWS refused the credentials ({code}): {CREDENTIAL_HELP}")
        if code in ("AccessDenied", "AccessDeniedException", "Forbidden") or http_status(exc) == 403:
            return AuthError(f"{where}: access denied ({code or 403}): the role needs {denied_hint}")
    return None
