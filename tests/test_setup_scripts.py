"""scripts/: debootstrap takes the machine's own Debian mirror, and no public package host is in the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO / "scripts" / "debian_mirror.py"


def _mirror(apt_etc: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "SHIPWAY_DEBIAN_MIRROR"}
    environ.update(SHIPWAY_APT_ETC=str(apt_etc), **env)
    return subprocess.run([sys.executable, str(MIRROR), "bookworm"], env=environ, capture_output=True, text=True)


@pytest.fixture
def apt_etc(tmp_path: Path) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    return tmp_path


def test_deb822_sources_give_the_uri_serving_the_suite(apt_etc: Path) -> None:
    (apt_etc / "sources.list.d" / "company.sources").write_text(
        "Types: deb\n# the security archive comes first here\nURIs: http://mirror.corp.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb-src deb\nURIs: http://mirror.corp.example/debian/\n"
        "  http://second.corp.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert _mirror(apt_etc).stdout.strip() == "http://mirror.corp.example/debian"


def test_disabled_deb822_paragraph_is_skipped(apt_etc: Path) -> None:
    (apt_etc / "sources.list.d" / "a.sources").write_text(
        "Enabled: no\nTypes: deb\nURIs: http://off.corp.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://on.corp.example/debian\nSuites: bookworm\n"
    )
    assert _mirror(apt_etc).stdout.strip() == "http://on.corp.example/debian"


def test_one_line_sources_list_with_options(apt_etc: Path) -> None:
    (apt_etc / "sources.list").write_text(
        "# company proxy\ndeb-src http://src.corp.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://proxy.corp.example:3142/debian bookworm main\n"
    )
    assert _mirror(apt_etc).stdout.strip() == "http://proxy.corp.example:3142/debian"


def test_environment_variable_wins(apt_etc: Path) -> None:
    (apt_etc / "sources.list").write_text("deb http://apt.corp.example/debian bookworm main\n")
    found = _mirror(apt_etc, SHIPWAY_DEBIAN_MIRROR="http://override.corp.example/debian")
    assert found.stdout.strip() == "http://override.corp.example/debian"


def test_no_source_names_the_variable(apt_etc: Path) -> None:
    found = _mirror(apt_etc)
    assert (found.returncode, "SHIPWAY_DEBIAN_MIRROR" in found.stderr) == (1, True)


def test_this_machine_has_a_mirror_for_debootstrap() -> None:
    found = subprocess.run([sys.executable, str(MIRROR), "bookworm"], capture_output=True, text=True)
    assert urlsplit(found.stdout.strip()).scheme in ("http", "https"), found.stderr


def _package_hosts() -> set[str]:
    """Hosts this machine installs packages from (apt sources, pip and npm config): none may be in the repo."""
    hosts: set[str] = set()
    apt = Path("/etc/apt")
    for path in [apt / "sources.list", *apt.glob("sources.list.d/*")]:
        if path.is_file():
            for word in path.read_text(errors="replace").split():
                if "://" in word:
                    hosts.add(urlsplit(word).hostname or "")
    pip = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    for word in (pip.stdout + " " + os.environ.get("PIP_INDEX_URL", "")).replace("'", " ").split():
        if "://" in word:
            hosts.add(urlsplit(word.split("=", 1)[-1]).hostname or "")
    return {h for h in hosts if h and not h.startswith(("127.", "localhost"))}


def test_no_package_host_of_this_machine_is_written_in_the_repository() -> None:
    hosts = _package_hosts()
    assert hosts, "found no package source on this machine to look for"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    offenders = []
    for name in filter(None, tracked.stdout.split("\0")):
        path = REPO / name
        if path.is_file() and path.stat().st_size < 2_000_000:
            text = path.read_text(errors="replace")
            offenders += [f"{name}: {host}" for host in hosts if host in text]
    assert offenders == []
