"""The dirty flag: what never enters a build context never makes a work tree dirty."""

from __future__ import annotations

import subprocess
from pathlib import Path

from shipway.gitinfo import source_info


def _repo(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    (app / "pkg").mkdir(parents=True)
    (app / "pkg" / "code.py").write_text("x = 1\n")
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "."],
        ["-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "c"],
    ):
        subprocess.run(["git", *args], cwd=app, check=True)
    return app


def test_caches_the_test_stage_writes_leave_the_tree_clean(tmp_path: Path) -> None:
    # No .gitignore: a new project's tests write bytecode and pytest's cache next to the code.
    app = _repo(tmp_path)
    (app / "pkg" / "__pycache__").mkdir()
    (app / "pkg" / "__pycache__" / "code.cpython-311.pyc").write_bytes(b"\0")
    (app / ".pytest_cache" / "v").mkdir(parents=True)
    (app / ".pytest_cache" / "v" / "x").write_text("{}")
    (app / ".shipway" / "cache").mkdir(parents=True)
    (app / ".shipway" / "cache" / "y").write_text("{}")
    (app / ".venv" / "bin").mkdir(parents=True)
    (app / ".venv" / "bin" / "python").write_text("")
    info = source_info(app)
    assert info.dirty is False
    assert info.commit != "unknown"


def test_an_untracked_or_edited_file_the_context_holds_makes_it_dirty(tmp_path: Path) -> None:
    app = _repo(tmp_path)
    (app / "pkg" / "new.py").write_text("y = 2\n")
    assert source_info(app).dirty is True
    (app / "pkg" / "new.py").unlink()
    (app / "pkg" / "code.py").write_text("x = 2\n")
    assert source_info(app).dirty is True
