"""Error classes and the exit code each one means to CI."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; documented in README.md ("Exit codes")."""

    OK = 0
    INTERNAL = 1
    CONFIG = 2
    TESTS_FAILED = 3
    BUILD_FAILED = 4
    VERIFY_FAILED = 5
    ROLLED_BACK = 6
    BACKEND = 7
    MODEL = 8
    LOCKED = 9


class ShipwayError(Exception):
    """Base of every error shipway reports to the user without a traceback."""

    exit_code: ExitCode = ExitCode.INTERNAL


class ConfigError(ShipwayError):
    """The configuration (or a command-line argument) is wrong."""

    exit_code = ExitCode.CONFIG


class PluginError(ConfigError):
    """A plugin failed to load or a requested backend kind is unknown."""


class TestsFailed(ShipwayError):
    """The application's test command failed."""

    exit_code = ExitCode.TESTS_FAILED


class BuildFailed(ShipwayError):
    """The image build failed."""

    exit_code = ExitCode.BUILD_FAILED


class VerifyFailed(ShipwayError):
    """A verify check failed against a container or a live endpoint."""

    exit_code = ExitCode.VERIFY_FAILED


class RolledBack(ShipwayError):
    """A release failed and the previous revision was restored."""

    exit_code = ExitCode.ROLLED_BACK


class BackendError(ShipwayError):
    """A backend is unreachable, refused our credentials, or failed an operation."""

    exit_code = ExitCode.BACKEND


class AuthError(BackendError):
    """A backend rejected the credentials it was given."""


class NotFound(BackendError):
    """A backend does not hold the requested object."""


class TagExists(BackendError):
    """A registry tag already names another image; shipway never moves a tag."""


class ModelError(ShipwayError):
    """A model version is missing, or its files do not match their manifest."""

    exit_code = ExitCode.MODEL


REPUBLISH = "the stored version was damaged or edited: publish the model again and select the new version"


class ReadOnlyStore(ModelError):
    """The model store can be read but not written (publish, set_alias)."""

    exit_code = ExitCode.CONFIG


class IntegrityError(ModelError):
    """A model file's size or sha256 differs from its manifest."""


class LockedError(ShipwayError):
    """Another release of the same app and environment holds the lock."""

    exit_code = ExitCode.LOCKED
