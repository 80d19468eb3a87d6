#!/usr/bin/env python3
"""Unchanged-model fetch per model store: bytes and seconds, shipway vs downloading every file again.

Run after the README's setup (Azurite on 127.0.0.1:10000 with the well-known
development account, moto's server on 127.0.0.1:5001; no Docker needed)::

    .venv/bin/python bench/fetch_unchanged.py --model-mib 64 --reps 3

A model of ``--model-mib`` MiB of random bytes plus a few small files is
published once to each store (``local``, ``azure_blob`` on Azurite, ``s3`` on
moto). Each repetition then goes store by store, alternating the order of the
three scenarios:

- ``cold``: ``resolve`` + ``fetch`` with an empty shipway cache (a fresh runner);
- ``unchanged``: ``resolve`` + ``fetch`` of the same version again, into a new
  folder, with the cache the cold fetch left (the next build of a commit that
  did not change the model);
- ``naive``: every file of the version downloaded again with the SDK directly
  (boto3 ``download_file``, azure-storage-blob ``download_blob``, a file copy
  for the local store): what a pipeline without shipway's cache does each time.

Bytes: ``model bytes`` are the bytes the store's download primitive wrote
(shipway) or the SDK wrote (naive); ``wire bytes`` are every byte the server
sent back, counted by a TCP relay the clients talk through (manifests,
listings and headers included). Both stores' clients go through the relay in
every scenario, so its cost is on both sides of each ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import select
import shutil
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shipway.backends.base import BackendContext, ModelStore
from shipway.backends.local_store import LocalModelStore, LocalStoreSettings
from shipway.domain import ModelRef, ModelVersion

AZURITE = os.environ.get("SHIPWAY_AZURITE_ADDRESS", "127.0.0.1:10000")
MOTO = os.environ.get("SHIPWAY_MOTO_ADDRESS", "127.0.0.1:5001")
# Azurite's documented development account (public, not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
MODEL = "bench-model"


class CountingRelay:
    """A loopback TCP relay to ``target`` that counts the bytes the server sends back."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.received = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.target)
        try:
            while True:
                ready, _, _ = select.select([client, upstream], [], [])
                for sock in ready:
                    data = sock.recv(1 << 18)
                    if not data:
                        return
                    if sock is upstream:
                        with self._lock:
                            self.received += len(data)
                        client.sendall(data)
                    else:
                        upstream.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        self._listener.close()


class Target:
    """One store under test: the shipway backend, a naive download of every file, a byte relay."""

    def __init__(self, name: str, relay: CountingRelay | None, make: Callable[[Path], ModelStore]) -> None:
        self.name = name
        self.relay = relay
        self.make = make
        self.naive: Callable[[ModelVersion, Path], None] = lambda v, d: None

    def wire(self) -> int:
        return self.relay.received if self.relay else 0


def counted(store: ModelStore) -> list[int]:
    """Count the bytes the store's download primitive writes (wraps this instance's ``_download``)."""
    written = [0]
    inner = store._download

    def download(version: ModelVersion, file: Any, dest: Path) -> None:
        before = dest.stat().st_size if dest.exists() else 0
        inner(version, file, dest)
        written[0] += dest.stat().st_size - before

    store._download = download  # type: ignore[method-assign]
    return written


def make_model(folder: Path, mib: int) -> Path:
    folder.mkdir(parents=True)
    with (folder / "weights.bin").open("wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    for i in range(4):
        (folder / f"vocab-{i}.txt").write_bytes(os.urandom(4096))
    (folder / "config.json").write_text('{"layers": 12}\n')
    return folder


class Bench:
    def __init__(self, work: Path, mib: int) -> None:
        self.work = work
        self.model = make_model(work / "model", mib)
        self.model_bytes = sum(p.stat().st_size for p in self.model.iterdir())
        self.targets: list[Target] = []
        self.versions: dict[str, ModelVersion] = {}
        self.results: dict[tuple[str, str], list[tuple[float, int, int]]] = {}

    def ctx(self, cache: Path) -> BackendContext:
        return BackendContext(root=self.work, cache_dir=cache)

    # -- the three stores -------------------------------------------------------------
    def add_local(self) -> None:
        root = self.work / "local-store"

        def make(cache: Path) -> ModelStore:
            return LocalModelStore(LocalStoreSettings(kind="local", path=str(root)), self.ctx(cache))

        target = Target("local", None, make)

        def naive(version: ModelVersion, dest: Path) -> None:
            for f in version.files:
                out = dest / f.path
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / MODEL / "versions" / version.version / "files" / f.path, out)

        target.naive = naive
        self.targets.append(target)

    def add_azure(self) -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        from shipway_azure.blob_store import AzureBlobSettings, AzureBlobStore

        relay = CountingRelay(AZURITE)
        conn = (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{relay.port}/{DEV_ACCOUNT};"
        )
        container = f"bench-{uuid.uuid4().hex[:8]}"
        service = BlobServiceClient.from_connection_string(conn)
        with contextlib.suppress(ResourceExistsError):
            service.create_container(container)

        def make(cache: Path) -> ModelStore:
            settings = AzureBlobSettings(kind="azure_blob", connection_string=conn, container=container)
            return AzureBlobStore(settings, self.ctx(cache))

        target = Target("azure_blob (Azurite)", relay, make)

        def naive(version: ModelVersion, dest: Path) -> None:
            client = service.get_container_client(container)
            for f in version.files:
                out = dest / f.path
                out.parent.mkdir(parents=True, exist_ok=True)
                with out.open("wb") as fh:
                    client.download_blob(f"{MODEL}/blobs/sha256/{f.sha256}", max_concurrency=8).readinto(fh)

        target.naive = naive
        self.targets.append(target)

    def add_s3(self) -> None:
        import boto3

        from shipway_aws.s3_store import S3Settings, S3Store

        relay = CountingRelay(MOTO)
        url = f"http://127.0.0.1:{relay.port}"
        os.environ.update(
            AWS_ACCESS_KEY_ID="AKIASHIPWAYBENCH0001",
            AWS_SECRET_ACCESS_KEY="bench-secret",  # moto accepts any key
            AWS_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE="/nonexistent/shipway-bench/aws-config",
            AWS_SHARED_CREDENTIALS_FILE="/nonexistent/shipway-bench/aws-credentials",
        )
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        client.create_bucket(Bucket=bucket)

        def make(cache: Path) -> ModelStore:
            settings = S3Settings(kind="s3", bucket=bucket, endpoint_url=url, region="us-east-1")
            return S3Store(settings, self.ctx(cache))

        target = Target("s3 (moto)", relay, make)

        def naive(version: ModelVersion, dest: Path) -> None:
            for f in version.files:
                out = dest / f.path
                out.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, f"{MODEL}/blobs/sha256/{f.sha256}", str(out))

        target.naive = naive
        self.targets.append(target)

    # -- scenarios ---------------------------------------------------------------------
    def publish(self) -> None:
        for target in self.targets:
            store = target.make(self.work / f"publish-cache-{uuid.uuid4().hex[:6]}")
            self.versions[target.name] = store.publish(self.model, MODEL)

    def fresh(self, label: str) -> Path:
        return self.work / f"{label}-{uuid.uuid4().hex[:8]}"

    def measure(self, target: Target, scenario: str, action: Callable[[], int]) -> None:
        wire = target.wire()
        start = time.monotonic()
        model_bytes = action()
        seconds = time.monotonic() - start
        wire = target.wire() - wire
        self.results.setdefault((target.name, scenario), []).append((seconds, model_bytes, wire))
        print(
            f"  {target.name:<22} {scenario:<10} {seconds:7.3f} s  model {model_bytes / 1e6:8.2f} MB"
            f"  wire {wire / 1e6:8.2f} MB",
            flush=True,
        )

    def shipway_fetch(self, store: ModelStore, written: list[int]) -> int:
        before = written[0]
        version = store.resolve(ModelRef(name=MODEL))
        dest = store.fetch(version, self.fresh("dest"))
        if sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) != self.model_bytes:
            raise SystemExit(f"{dest}: the fetched model is not the published one")
        shutil.rmtree(dest)
        return written[0] - before

    def naive_fetch(self, target: Target) -> int:
        dest = self.fresh("naive")
        dest.mkdir()
        target.naive(self.versions[target.name], dest)
        got = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
        shutil.rmtree(dest)
        return got

    def rep(self, index: int) -> None:
        for target in self.targets:
            cache = self.fresh("cache")
            store = target.make(cache)
            written = counted(store)

            def naive(target: Target = target) -> None:
                self.measure(target, "naive", lambda: self.naive_fetch(target))

            if index % 2 == 0:
                naive()

            def fetch(store: ModelStore = store, written: list[int] = written) -> int:
                return self.shipway_fetch(store, written)

            self.measure(target, "cold", fetch)
            self.measure(target, "unchanged", fetch)
            if index % 2 == 1:
                naive()
            shutil.rmtree(cache, ignore_errors=True)


def table(bench: Bench, reps: int, mib: int) -> str:
    def med(name: str, scenario: str, i: int) -> float:
        return statistics.median(run[i] for run in bench.results[(name, scenario)])

    lines = [
        f"model: {mib} MiB random + 5 small files ({bench.model_bytes / 1e6:.1f} MB); {reps} repetitions, medians",
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "",
        "| store | scenario | seconds | model MB downloaded | wire MB received |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for target in bench.targets:
        for scenario in ("naive", "cold", "unchanged"):
            lines.append(
                f"| {target.name} | {scenario} | {med(target.name, scenario, 0):.3f} | "
                f"{med(target.name, scenario, 1) / 1e6:.2f} | {med(target.name, scenario, 2) / 1e6:.3f} |"
            )
    lines += ["", "| store | unchanged / naive (time) | cold / naive (time) | unchanged model bytes (target 0) |"]
    lines.append("| --- | ---: | ---: | ---: |")
    for target in bench.targets:
        naive = med(target.name, "naive", 0)
        worst = max(run[1] for run in bench.results[(target.name, "unchanged")])
        lines.append(
            f"| {target.name} | {med(target.name, 'unchanged', 0) / naive:.2f}x | "
            f"{med(target.name, 'cold', 0) / naive:.2f}x | {worst} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-mib", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--stores", default="local,azure_blob,s3", help="comma-separated")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shipway-bench-fetch-"))
    try:
        bench = Bench(work, args.model_mib)
        wanted = {s.strip() for s in args.stores.split(",")}
        if "local" in wanted:
            bench.add_local()
        if "azure_blob" in wanted:
            bench.add_azure()
        if "s3" in wanted:
            bench.add_s3()
        print(f"publishing {bench.model_bytes / 1e6:.1f} MB to {len(bench.targets)} stores ...", flush=True)
        bench.publish()
        for i in range(args.reps):
            print(f"repetition {i + 1}/{args.reps}", flush=True)
            bench.rep(i)
        print()
        print(table(bench, args.reps, args.model_mib))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
