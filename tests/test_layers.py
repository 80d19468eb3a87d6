"""The deterministic pieces of a build, without an engine: model layer, context, Dockerfile reading, inputs."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from datetime import UTC, datetime
from pathlib import Path

from shipway import context, dockerfile, inputs
from shipway.domain import ModelFile, ModelVersion
from shipway.layers import model_layer, tar_chunks, tar_size


def _model(folder: Path, files: dict[str, bytes]) -> ModelVersion:
    entries = []
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        entries.append(ModelFile(path=rel, size=len(data), sha256=hashlib.sha256(data).hexdigest()))
    return ModelVersion(name="m", version="1", created=datetime(2026, 1, 1, tzinfo=UTC), files=tuple(entries))


FILES = {"weights/w.bin": os.urandom(300_000), "config.json": b"{}", "a/b/c.txt": b"deep\n"}


def test_model_layer_digest_is_identical_across_empty_caches_and_file_times(tmp_path: Path) -> None:
    one = _model(tmp_path / "one", FILES)
    two = _model(tmp_path / "two", FILES)
    for path in (tmp_path / "two").rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
        path.chmod(0o700 if path.is_dir() else 0o600)
    first = model_layer(one, tmp_path / "one", "/app/model", tmp_path / "cache-a")
    second = model_layer(two, tmp_path / "two", "/app/model", tmp_path / "cache-b")
    assert first.digest == second.digest
    assert first.size == second.size
    cached = model_layer(one, tmp_path / "one", "/app/model", tmp_path / "cache-a")
    assert cached.digest == first.digest


def test_model_layer_moves_with_the_target_and_the_bytes(tmp_path: Path) -> None:
    version = _model(tmp_path / "m", FILES)
    base = model_layer(version, tmp_path / "m", "/app/model", tmp_path / "cache")
    assert model_layer(version, tmp_path / "m", "/srv/model", tmp_path / "cache").digest != base.digest
    changed = _model(tmp_path / "n", {**FILES, "config.json": b'{"v": 2}'})
    assert model_layer(changed, tmp_path / "n", "/app/model", tmp_path / "cache").digest != base.digest


def test_model_layer_tar_is_sorted_owned_by_root_and_dated_zero(tmp_path: Path) -> None:
    version = _model(tmp_path / "m", FILES)
    layer = model_layer(version, tmp_path / "m", "/app/model", tmp_path / "cache")
    data = b"".join(layer.chunks())
    assert len(data) == layer.size
    assert "sha256:" + hashlib.sha256(data).hexdigest() == layer.digest
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = archive.getmembers()
        names = [m.name for m in members]
        assert names == [
            "app",
            "app/model",
            "app/model/a",
            "app/model/a/b",
            "app/model/a/b/c.txt",
            "app/model/config.json",
            "app/model/weights",
            "app/model/weights/w.bin",
        ]
        assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 0)}
        assert {m.mode for m in members if m.isdir()} == {0o755}
        assert {m.mode for m in members if m.isfile()} == {0o644}
        extracted = archive.extractfile("app/model/weights/w.bin")
        assert extracted is not None
        assert extracted.read() == FILES["weights/w.bin"]


def test_tar_size_matches_long_names(tmp_path: Path) -> None:
    version = _model(tmp_path / "m", {"x" * 150 + "/" + "y" * 120: b"long"})
    layer = model_layer(version, tmp_path / "m", "/opt/models/current", tmp_path / "cache")
    assert tar_size(layer.entries) == len(b"".join(tar_chunks(layer.entries)))


def test_context_honours_dockerignore_and_never_holds_the_model(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / "src" / "main.py").write_text("print(1)\n")
    (app / "Dockerfile").write_text("FROM scratch\n")
    (app / "big.bin").write_bytes(b"\0" * 1000)
    (app / "model").mkdir()
    (app / "model" / "leftover.bin").write_bytes(b"old weights")
    (app / ".git").mkdir()
    (app / ".git" / "HEAD").write_text("ref\n")
    (app / ".dockerignore").write_text("# comment\nbig.bin\n")
    names = {e.name for e in context.app_entries(app, "Dockerfile", ["model/"])}
    assert names == {"src", "src/main.py", "Dockerfile", ".dockerignore"}


def test_context_digest_ignores_file_times_and_sees_content(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "Dockerfile").write_text("FROM scratch\n")
    (app / "run.py").write_text("print(1)\n")
    first = context.digest(context.app_entries(app, "Dockerfile", []), mtime=1)
    os.utime(app / "run.py", (5, 5))
    assert context.digest(context.app_entries(app, "Dockerfile", []), mtime=1) == first
    (app / "run.py").write_text("print(2)\n")
    assert context.digest(context.app_entries(app, "Dockerfile", []), mtime=1) != first


DOCKERFILE = """
ARG RUNTIME=python:3.11-slim
FROM ${RUNTIME} AS runtime
RUN echo hi
FROM builder:1 AS wheels
COPY --from=runtime /x /y
FROM runtime
COPY ["server.py", "./"]
COPY models/current/ \\
     /srv/model/
"""


def test_dockerfile_final_base_follows_stages_and_build_args() -> None:
    stages = dockerfile.parse(DOCKERFILE, {})
    assert dockerfile.final_base(stages) == "python:3.11-slim"
    assert dockerfile.final_base(dockerfile.parse(DOCKERFILE, {"RUNTIME": "base:2"})) == "base:2"
    assert dockerfile.external_bases(stages) == ["python:3.11-slim", "builder:1"]
    assert dockerfile.final_base(dockerfile.parse("FROM scratch\n", {})) is None


def test_dockerfile_copying_the_model_is_detected() -> None:
    stages = dockerfile.parse(DOCKERFILE, {})
    assert dockerfile.copies_path(stages, "models/current")
    assert dockerfile.copies_path(stages, "models/")
    assert not dockerfile.copies_path(stages, "model/")
    assert not dockerfile.copies_path(stages, "y")


def test_dockerfile_copies_see_a_global_arg_only_where_a_stage_brings_it_in() -> None:
    # Docker scopes an ARG before the first FROM to FROM lines: in a stage it is empty until a bare ARG.
    text = "ARG WEIGHTS=weights\nFROM python:3.11-slim\nCOPY ${WEIGHTS}/ /srv/w/\n"
    assert not dockerfile.copies_path(dockerfile.parse(text, {}), "weights")
    assert dockerfile.copies_path(dockerfile.parse(text.replace("COPY", "ARG WEIGHTS\nCOPY"), {}), "weights")
    assert dockerfile.copies_path(dockerfile.parse(text.replace("COPY", "ARG WEIGHTS\nCOPY"), {"WEIGHTS": "m"}), "m")
    assert not dockerfile.copies_path(dockerfile.parse(text, {"WEIGHTS": "m"}), "m")  # a build arg needs the ARG too
    # A stage's ARG default does not see a global ARG either.
    defaulted = "ARG W=weights\nFROM python:3.11-slim\nARG SRC=${W}\nCOPY ${SRC}/ /srv/w/\n"
    assert not dockerfile.copies_path(dockerfile.parse(defaulted, {}), "weights")


def test_dockerfile_final_workdir_follows_stages_args_and_the_base() -> None:
    def predict(text: str, args: dict[str, str] | None = None, base: str | None = "/") -> str | None:
        return dockerfile.final_workdir(dockerfile.parse(text, args or {}), base)

    text = (
        "ARG ROOT=/srv\n"
        "FROM python:3.11-slim AS build\nARG ROOT\nWORKDIR ${ROOT}\nWORKDIR app\n"
        "FROM build AS runtime\nWORKDIR ../scorer\n"
    )
    assert predict(text) == "/srv/scorer"
    assert predict(text, {"ROOT": "/opt"}) == "/opt/scorer"
    assert predict("FROM b\nARG D=/x\nWORKDIR $D/y\n") == "/x/y"
    # No WORKDIR: the base image's; relative ones start there; scratch starts at /.
    assert predict("FROM python:3.11-slim\n", base="/home/app") == "/home/app"
    assert predict("FROM base\nWORKDIR code\n", base="/home") == "/home/code"
    assert predict("FROM scratch\nWORKDIR w\n", base="/ignored") == "/w"
    # A base the engine does not have yet: only an absolute WORKDIR tells.
    assert predict("FROM base\nWORKDIR code\n", base=None) is None
    assert predict("FROM base\nWORKDIR /srv\nWORKDIR code\n", base=None) == "/srv/code"
    # What this reading cannot follow gives no prediction (the builder then waits for the image):
    # a variable an ENV sets, even over an ARG of the same name, and a global ARG not brought into
    # the stage (Docker gives it only to FROM lines).
    assert predict("FROM b\nENV D=/x\nWORKDIR $D\n") is None
    assert predict("FROM b\nARG D=/a\nENV D=/x\nWORKDIR $D\n") is None
    assert predict("ARG ROOT=/srv\nFROM b\nWORKDIR ${ROOT}/app\n") is None


def test_inputs_digest_and_tag() -> None:
    parts = {"commit": "a" * 40, "model": "sha256:1", "args": {"A": "1"}}
    first = inputs.digest(parts)
    assert inputs.digest(dict(reversed(list(parts.items())))) == first
    assert inputs.digest({**parts, "args": {"A": "2"}}) != first
    tag = inputs.tag(first)
    assert inputs.is_lookup_tag(tag)
    assert len(tag) <= 128
    assert tag == inputs.tag(first)


def test_context_digest_cache_gives_the_same_digest_and_sees_changes(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "Dockerfile").write_text("FROM scratch\n")
    (app / "data.bin").write_bytes(os.urandom(2 << 20))
    cache = tmp_path / "cache"
    plain = context.digest(context.app_entries(app, "Dockerfile", []), mtime=1)
    assert context.digest(context.app_entries(app, "Dockerfile", []), mtime=1, cache_dir=cache) == plain
    assert (cache / "context-hashes.json").is_file()
    assert context.digest(context.app_entries(app, "Dockerfile", []), mtime=1, cache_dir=cache) == plain
    (app / "data.bin").write_bytes(os.urandom(2 << 20))
    changed = context.digest(context.app_entries(app, "Dockerfile", []), mtime=1, cache_dir=cache)
    assert changed != plain
    assert changed == context.digest(context.app_entries(app, "Dockerfile", []), mtime=1)


def test_compressed_app_layers_are_deterministic_and_cached(tmp_path: Path) -> None:
    import gzip

    from shipway.image import gzip_blob

    layer = tmp_path / "layer.tar"
    layer.write_bytes(os.urandom(100_000) + b"\0" * 3_000_000)
    diff_id = "sha256:" + hashlib.sha256(layer.read_bytes()).hexdigest()
    data = layer.read_bytes()
    one = gzip_blob(diff_id, lambda: [data[:1000], data[1000:]], tmp_path / "a")
    two = gzip_blob(diff_id, lambda: [layer.read_bytes()], tmp_path / "b")
    assert one.digest == two.digest
    assert one.media_type.endswith("tar.gzip")
    assert one.opener is not None
    data = b"".join(one.opener())
    assert len(data) == one.size < layer.stat().st_size
    assert "sha256:" + hashlib.sha256(data).hexdigest() == one.digest
    assert gzip.decompress(data) == layer.read_bytes()
    assert gzip_blob(diff_id, lambda: [layer.read_bytes()], tmp_path / "a").digest == one.digest
