"""YAML loading that remembers where every key came from.

Errors anywhere in shipway's configuration are reported as
``file:line:col: key.path: message``. This module keeps the position of every
key and item, rejects duplicate keys, and expands ``${VAR}`` / ``${VAR:-default}``
in string values (``$${`` writes a literal ``${``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from shipway.errors import ConfigError

Path_ = tuple[str | int, ...]
_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{([^}]*)\}?")


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


@dataclass
class Document:
    """Parsed YAML data plus the 1-based (line, column) of every key path."""

    file: Path
    data: Any
    positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    interpolated: set[Path_] = field(default_factory=set)

    def where(self, path: Path_) -> str:
        """``file:line:col`` of the deepest known prefix of ``path``."""
        for end in range(len(path), -1, -1):
            pos = self.positions.get(tuple(path[:end]))
            if pos:
                return f"{self.file}:{pos[0]}:{pos[1]}"
        return f"{self.file}:1:1"

    def error(self, path: Path_, message: str) -> ConfigError:
        return ConfigError(f"{self.where(path)}: {format_path(path)}: {message}")


def load_file(path: Path, environ: Mapping[str, str] | None = None) -> Document:
    """Read and parse ``path``; every problem is a :class:`ConfigError` with file:line:col."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return load_text(text, path, environ)


def load_text(text: str, file: Path, environ: Mapping[str, str] | None = None) -> Document:
    env = os.environ if environ is None else environ
    doc = Document(file=file, data=None)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{file}:{line}:{col}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: YAML error: {exc}") from None
    if node is None:
        raise ConfigError(f"{file}:1:1: the file is empty")
    doc.data = _build(node, (), doc, env, SafeConstructor())
    return doc


def _build(node: yaml.Node, path: Path_, doc: Document, env: Mapping[str, str], ctor: SafeConstructor) -> Any:
    doc.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _at(doc, key_node, path, "merge keys (<<) are not supported; repeat the keys")
            if not isinstance(key_node, yaml.ScalarNode):
                raise _at(doc, key_node, path, "keys must be plain strings")
            key = str(ctor.construct_object(key_node))
            if key in out:
                first = doc.positions[(*path, key)]
                raise _at(doc, key_node, (*path, key), f"duplicate key (first defined at line {first[0]})")
            doc.positions[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _build(value_node, (*path, key), doc, env, ctor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), doc, env, ctor) for i, item in enumerate(node.value)]
    try:
        value = ctor.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        raise _at(doc, node, path, f"cannot read value: {exc.problem}") from None
    if isinstance(value, str) and "$" in value:
        value = _interpolate(value, path, doc, env)
    return value


def _interpolate(value: str, path: Path_, doc: Document, env: Mapping[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name is None:
            raise doc.error(path, f"bad variable reference {text!r}: write ${{NAME}} or ${{NAME:-default}}")
        doc.interpolated.add(path)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        raise doc.error(path, f"environment variable {name} is not set (write ${{{name}:-default}} for a default)")

    return _VAR.sub(sub, value)


def _at(doc: Document, node: yaml.Node, path: Path_, message: str) -> ConfigError:
    return ConfigError(
        f"{doc.file}:{node.start_mark.line + 1}:{node.start_mark.column + 1}: {format_path(path)}: {message}"
    )
