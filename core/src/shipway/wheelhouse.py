"""Dependencies downloaded on the host, so the image installs them with no index.

The wheelhouse is cached by the hash of the requirements file, the Python
version and the platforms, so only a change to the requirements downloads again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from shipway.config import WheelhouseConfig
from shipway.errors import BuildFailed, ConfigError
from shipway.progress import Reporter


def prepare(settings: WheelhouseConfig, context: Path, cache_dir: Path, reporter: Reporter) -> Path:
    """Return a folder of wheels for ``settings.requirements`` (downloaded once, then cached)."""
    requirements = context / settings.requirements
    if not requirements.is_file():
        raise ConfigError(f"build.wheelhouse.requirements: {requirements} not found")
    key = hashlib.sha256()
    key.update(requirements.read_bytes())
    key.update(settings.python_version.encode())
    for platform in settings.platforms:
        key.update(platform.encode())
    target = cache_dir / "wheelhouse" / key.hexdigest()[:24]
    if (target / ".complete").is_file():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", "--python-version", settings.python_version,
        *[arg for p in settings.platforms for arg in ("--platform", p)],
        "-d", str(partial), "-r", str(requirements),
    ]  # fmt: skip
    reporter.info(f"  downloading wheels for {settings.requirements} (python {settings.python_version})")
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PIP_NO_INPUT": "1"})
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise BuildFailed(f"wheelhouse: pip download failed for {requirements}:\n{tail}")
    (partial / ".complete").write_text("")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    return target
