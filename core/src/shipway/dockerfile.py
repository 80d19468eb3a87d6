"""Just enough Dockerfile reading: the images stages start from, and what COPY/ADD take.

shipway needs the final stage's base image (to put the model layer right
above it, and to key builds by the base's image ID), whether the
Dockerfile copies the model itself (the slow path, see builder.py), and the
final WORKDIR it can predict (to write the model layer while the app builds).
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-+]([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class Stage:
    """One ``FROM`` and the instructions under it."""

    base: str
    name: str | None
    copies: list[list[str]] = field(default_factory=list)
    """Source paths of each COPY/ADD that reads the build context (not ``--from``)."""
    workdirs: list[str] = field(default_factory=list)
    """Each ``WORKDIR``, build args expanded (``$`` left where an ``ENV`` would be needed)."""


def _lines(text: str) -> list[str]:
    out: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        out.append(current)
        current = ""
    if current.strip():
        out.append(current)
    return out


def _expand(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        found = env.get(name)
        if found:
            return found
        return m.group(2) or ""

    return _VAR.sub(sub, value)


def parse(text: str, build_args: dict[str, str]) -> list[Stage]:
    """The stages of a Dockerfile with build args and ``ARG`` defaults expanded."""
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    stage_env: dict[str, str] = {}
    env_names: set[str] = set()
    for line in _lines(text):
        word, _, rest = line.partition(" ")
        instr = word.upper()
        rest = rest.strip()
        if instr == "ARG":
            name, eq, default = rest.partition("=")
            name = name.strip()
            if eq:  # a default sees the ARGs in scope where it stands: the global ones before the first FROM
                value = build_args.get(name, _expand(default.strip().strip('"'), stage_env if stages else global_args))
            else:  # inside a stage, a bare ARG brings a global one (and its default) into scope
                value = build_args.get(name, global_args.get(name, "") if stages else "")
            (global_args if not stages else stage_env)[name] = value
        elif instr == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--")]
            base = _expand(parts[0], global_args) if parts else ""
            alias = parts[2].lower() if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=alias))
            stage_env = {}
            env_names = set()
        elif instr == "ENV" and stages:
            env_names |= _env_names(rest)
        elif instr == "WORKDIR" and stages:
            # Docker scopes ARGs before the first FROM to FROM lines: a stage sees only its own ARGs.
            # A variable an ENV sets (it wins over an ARG) is not followed here: no prediction then.
            names = {m.group(1) or m.group(3) for m in _VAR.finditer(rest)}
            known = all(n in stage_env and n not in env_names for n in names)
            stages[-1].workdirs.append(_expand(rest.strip('"'), stage_env) if known else "$" + rest)
        elif instr in ("COPY", "ADD") and stages:
            if any(p.startswith("--from") for p in rest.split()):
                continue
            if rest.startswith("["):
                try:
                    args = [str(a) for a in json.loads(rest)]
                except json.JSONDecodeError:
                    continue
            else:
                args = [p for p in rest.split() if not p.startswith("--")]
            # As for WORKDIR: a global ARG reaches a COPY only through a bare ARG in the stage.
            stages[-1].copies.append([_expand(a, stage_env) for a in args[:-1]])
    return stages


def _env_names(rest: str) -> set[str]:
    """Names an ``ENV`` instruction sets (``ENV A=1 B=2`` or the legacy ``ENV A 1``)."""
    if "=" not in rest.split(" ", 1)[0]:
        return {rest.split(" ", 1)[0]}
    return {part.split("=", 1)[0] for part in rest.split() if "=" in part}


def external_bases(stages: list[Stage]) -> list[str]:
    """Images the build starts from (not earlier stages, not ``scratch``), in order."""
    names = {s.name for s in stages if s.name}
    out: list[str] = []
    for s in stages:
        if s.base.lower() not in names and s.base != "scratch" and s.base not in out:
            out.append(s.base)
    return out


def final_base(stages: list[Stage]) -> str | None:
    """The image the final stage builds on, following ``FROM <earlier stage>``; None for scratch."""
    if not stages:
        return None
    by_name = {s.name: s for s in stages if s.name}
    base = stages[-1].base
    seen: set[str] = set()
    while base.lower() in by_name and base.lower() not in seen:
        seen.add(base.lower())
        base = by_name[base.lower()].base
    return None if base == "scratch" else base


def final_workdir(stages: list[Stage], base_workdir: str | None) -> str | None:
    """The WORKDIR the final stage ends in, its external base's being ``base_workdir`` (None: unknown).

    None when it cannot be told here: a ``WORKDIR`` needs a variable an
    ``ENV`` sets or no ARG in scope gives, or a relative one meets an unknown
    base. A prediction, which the builder checks against the built image.
    """
    by_name = {s.name: s for s in stages if s.name}
    chain: list[Stage] = []
    stage: Stage | None = stages[-1] if stages else None
    while stage is not None and not any(stage is seen for seen in chain):
        chain.append(stage)
        stage = by_name.get(stage.base.lower())
    current: str | None = "/" if chain and chain[-1].base == "scratch" else base_workdir
    for stage in reversed(chain):
        for workdir in stage.workdirs:
            if "$" in workdir:
                return None
            if workdir.startswith("/"):
                current = posixpath.normpath(workdir)
            elif current is not None:
                current = posixpath.normpath(posixpath.join(current, workdir))
    return current


def copies_path(stages: list[Stage], path: str) -> bool:
    """Whether any stage COPYs or ADDs ``path`` (or something inside it) from the build context."""
    want = path.strip("/").removeprefix("./").rstrip("/")
    for stage in stages:
        for sources in stage.copies:
            for src in sources:
                s = src.strip().removeprefix("./").rstrip("/")
                if s == want or s.startswith(want + "/"):
                    return True
    return False
