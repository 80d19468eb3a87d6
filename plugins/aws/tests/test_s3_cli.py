"""The s3 store through the CLI, as CI runs it: exit codes and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from shipway_aws.testing import MotoService

CONFIG = """\
version: 1
app: {name: tiny, port: 8000, health: /healthz}
model: {name: digits}
model_store: {kind: s3, bucket: "${BUCKET}", prefix: team-a}
registry: {kind: oci, address: "127.0.0.1:5000", repository: tiny}
"""


def shipway(moto: MotoService, folder: Path, bucket: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SHIPWAY_"))}
    env.update(moto.env(), BUCKET=bucket, SHIPWAY_CACHE_DIR=str(folder / "cache"))
    return subprocess.run(
        [sys.executable, "-m", "shipway.cli", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=120
    )


def test_publish_list_and_alias_through_the_cli(shipway_aws_moto: MotoService, tmp_path: Path) -> None:
    (tmp_path / "shipway.yaml").write_text(CONFIG)
    bucket = f"cli-{uuid.uuid4().hex[:8]}"
    shipway_aws_moto.client("s3").create_bucket(Bucket=bucket)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").write_bytes(b"weights")
    published = shipway(shipway_aws_moto, tmp_path, bucket, "model", "publish", "model", "--name", "digits")
    assert published.returncode == 0, published.stderr
    assert published.stdout.startswith("published digits:1 sha256:")
    missing = shipway(shipway_aws_moto, tmp_path, bucket, "model", "alias", "digits", "production", "7")
    assert missing.returncode == 8
    assert "has no version '7'" in missing.stderr
    assert missing.stderr.count("\n") == 1  # one line, no traceback


def test_a_missing_bucket_exits_7_with_one_line(shipway_aws_moto: MotoService, tmp_path: Path) -> None:
    (tmp_path / "shipway.yaml").write_text(CONFIG)
    out = shipway(shipway_aws_moto, tmp_path, "no-such-bucket-cli", "model", "list", "digits")
    assert out.returncode == 7
    assert out.stderr == "error: s3 store s3://no-such-bucket-cli/team-a/: bucket 'no-such-bucket-cli' does not exist\n"
