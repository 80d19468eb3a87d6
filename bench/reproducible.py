#!/usr/bin/env python3
"""Which layers of one commit come out identical when built twice on two fresh runners?

Run after the README's setup::

    .venv/bin/python bench/reproducible.py

Builds the example app twice (``shipway run --no-push``) from the same commit
and model, each time with an empty shipway cache and on a fresh base image
(``shipway-base`` plus one identical ``RUN`` step built with ``--no-cache``),
so Docker's cache cannot hand the second build the first one's layers. Prints
each layer of the final image (bottom to top) with whether both builds gave
the same diff ID.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from shipway import image

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "flask_app"
BASE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")


def sh(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, input=stdin)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


def fresh_base(tag: str) -> None:
    sh(
        ["docker", "build", "--no-cache", "-q", "-t", tag, "-"],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        stdin=f"FROM {BASE}\nRUN echo runner > /etc/runner\n",
    )


def build(work: Path, app: Path, base: str) -> dict[str, Any]:
    out = work / f"record-{uuid.uuid4().hex[:6]}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPWAY_")}
    env.update(
        SHIPWAY_REGISTRY="127.0.0.1:1",
        SHIPWAY_MODEL_STORE=str(work / "store"),
        SHIPWAY_CACHE_DIR=str(work / f"cache-{uuid.uuid4().hex[:6]}"),
        BASE_IMAGE=base,
        DOCKER_BUILDKIT="0",
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    )
    cmd = [sys.executable, "-m", "shipway.cli"]
    if not (work / "store").exists():
        sh([sys.executable, "train.py", "--out", str(work / "model")], cwd=EXAMPLE)
        sh([*cmd, "model", "publish", str(work / "model"), "--name", "digits"], cwd=app, env=env)
    sh([*cmd, "run", "--no-push", "--skip-tests", "-o", str(out)], cwd=app, env=env)
    return dict(json.loads(out.read_text()))


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="shipway-repro-"))
    bases = [f"repro-base:{uuid.uuid4().hex[:8]}", f"repro-base:{uuid.uuid4().hex[:8]}"]
    try:
        app = work / "app"
        shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns(".shipway", "build", "__pycache__"))
        sh(["git", "init", "-q", "-b", "main"], cwd=app)
        sh(["git", "add", "-A"], cwd=app)
        sh(["git", "-c", "user.name=b", "-c", "user.email=b@invalid", "commit", "-qm", "app"], cwd=app)
        records = []
        for tag in bases:
            fresh_base(tag)
            records.append(build(work, app, tag))
        saved = image.save(records[0]["local_image_id"], work / "spool")
        config = json.loads(saved.config)
        saved.cleanup()
        named = [h.get("created_by", "") for h in config.get("history", []) if not h.get("empty_layer")]
        layers = list(zip(records[0]["layers"], records[1]["layers"], strict=True))
        print(f"{len(layers)} layers, bottom to top (the first {len(layers) - 6} are the base's)\n")
        print("| # | layer | same in both builds |")
        print("| ---: | --- | --- |")
        for i, (a, b) in enumerate(layers):
            what = " ".join((named[i] if i < len(named) else "?").split())[-80:]
            print(f"| {i} | `{what}` | {'yes' if a == b else 'no'} |")
        same_config = records[0]["local_image_id"] == records[1]["local_image_id"]
        print(f"\nmodel layer identical: {records[0]['model_layer'] == records[1]['model_layer']}")
        print(f"image identical: {same_config}")
    finally:
        subprocess.run(["docker", "rmi", "-f", *bases], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
