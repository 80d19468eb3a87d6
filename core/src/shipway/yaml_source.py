"""YAML loading that remembers where every key came from, and refuses hostile input.

Errors anywhere in shipway's configuration are reported as
``file:line:col: key.path: message``. This module keeps the position of every
key and item, rejects duplicate keys, and expands ``${VAR}`` / ``${VAR:-default}``
in string values (``$${`` writes a literal ``${``; a nested reference such as
``${A:-${B}}`` is refused). It records how each string was written, so callers
can require that a secret is exactly one ``${VAR}``.

Scalars follow the YAML 1.2 core schema: ``true``/``false``, ``null``/``~``,
decimal, ``0o`` and ``0x`` integers, floats; anything else (``yes``, ``2024-01-01``,
``1:30``, ``0755``) stays the string that was written. Explicit tags other
than the core ones (``!!binary``, ``!!timestamp``, ``!!set``, ``!custom``, ...)
are refused.

Input is bounded before it can cost memory or stack: at most :data:`MAX_BYTES`
of text, :data:`MAX_DEPTH` levels of nesting, :data:`MAX_ALIASES` aliases and
:data:`MAX_NODES` values after aliases are expanded. Messages never quote more
than :data:`MAX_SHOWN` characters of a value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shipway.errors import ConfigError

Path_ = tuple[str | int, ...]

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_ALIASES = 1000
MAX_NODES = 100_000
MAX_SHOWN = 80
MAX_INT_DIGITS = 40

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(r"\$\$\{|\$\{")
_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null")}
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
# Integers with leading zeros (0755, 007) stay strings: YAML 1.1 read them as octal, 1.2 drops the zeros.
_INT = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9]+[eE][-+]?[0-9]+"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")


def format_path(path: Path_) -> str:
    """``app.env.KEY`` / ``verify[0].request`` form of a key path."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def shown(value: Any) -> str:
    """``repr`` of a value cut to :data:`MAX_SHOWN` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[: MAX_SHOWN - 3]}... ({len(text)} characters)"


@dataclass(frozen=True)
class Written:
    """How one string value was written: the ``${VAR}`` names in it, and whether it was one reference alone.

    ``sole`` is true only for ``${VAR}`` (or ``${VAR:-}``, an optional value) with no text around it and no
    default text: the only form a secret may take, so no secret can be written into the file.
    """

    names: tuple[str, ...]
    sole: bool


@dataclass
class Document:
    """Parsed YAML data plus the 1-based (line, column) of every key path."""

    file: Path
    data: Any
    positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    written: dict[Path_, Written] = field(default_factory=dict)

    def where(self, path: Path_) -> str:
        """``file:line:col`` of the deepest known prefix of ``path``."""
        for end in range(len(path), -1, -1):
            pos = self.positions.get(tuple(path[:end]))
            if pos:
                return f"{self.file}:{pos[0]}:{pos[1]}"
        return f"{self.file}:1:1"

    def error(self, path: Path_, message: str) -> ConfigError:
        """A :class:`ConfigError` positioned at ``path``."""
        return ConfigError(f"{self.where(path)}: {format_path(path)}: {message}")

    def names(self, path: Path_) -> tuple[str, ...]:
        """The environment variables the string at ``path`` was read from (empty if none)."""
        written = self.written.get(path)
        return written.names if written else ()

    def is_sole_reference(self, path: Path_) -> bool:
        """Whether the value at ``path`` was written as exactly one ``${VAR}`` and nothing else."""
        written = self.written.get(path)
        return bool(written and written.sole)


def load_file(path: Path, environ: Mapping[str, str] | None = None) -> Document:
    """Read and parse ``path``; every problem is a :class:`ConfigError` with file:line:col."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}: the file is larger than {MAX_BYTES // 1024} KiB; a configuration never needs that")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    return load_text(text, path, environ)


def load_text(text: str, file: Path, environ: Mapping[str, str] | None = None) -> Document:
    """Parse ``text`` (named ``file`` in errors), expanding ``${VAR}`` from ``environ`` (default: os.environ)."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{file}: the file is larger than {MAX_BYTES // 1024} KiB; a configuration never needs that")
    env = os.environ if environ is None else environ
    doc = Document(file=file, data=None)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except _TooBig as exc:
        raise ConfigError(f"{file}:{exc.line}:{exc.column}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(f"{file}:{_syntax_error(exc, _open_flow(loader, text))}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: YAML error: {_clip(str(exc))}") from None
    finally:
        loader.dispose()
    if node is None:
        raise ConfigError(f"{file}:1:1: the file is empty")
    doc.data = _Builder(doc, env).build(node, ())
    return doc


def _open_flow(loader: _Loader, text: str) -> tuple[Any, str] | None:
    """Mark and kind of the innermost ``[`` or ``{`` the parser had not seen closed when it failed, if any."""
    marks = getattr(loader, "marks", [])
    for m in reversed(marks):
        if 0 <= m.index < len(text) and text[m.index] in "[{":
            return m, "a flow sequence" if text[m.index] == "[" else "a flow mapping"
    return None


def _syntax_error(exc: yaml.MarkedYAMLError, open_flow: tuple[Any, str] | None) -> str:
    """``line:col: YAML syntax error: ...``; an unclosed bracket is placed where it opens, and the end named too."""
    problem = _clip(exc.problem or exc.context or "invalid YAML")
    mark, context = exc.problem_mark, exc.context_mark
    if mark is None:
        mark, context = context, None
    if mark is None:
        return f"1:1: YAML syntax error: {problem}"
    if "<stream end>" in problem and open_flow is not None:
        start, what = open_flow
        return (
            f"{start.line + 1}:{start.column + 1}: YAML syntax error: {what} is never closed:"
            f" {problem} at line {mark.line + 1}, column {mark.column + 1} (end of file)"
        )
    if context is None or (context.line, context.column) == (mark.line, mark.column):
        return f"{mark.line + 1}:{mark.column + 1}: YAML syntax error: {problem}"
    opened = f"{exc.context or 'while parsing'} that starts at line {context.line + 1}, column {context.column + 1}"
    return f"{mark.line + 1}:{mark.column + 1}: YAML syntax error: {problem} ({opened})"


class _TooBig(yaml.YAMLError):
    """A bound was crossed while composing (a clean error, never a RecursionError or MemoryError)."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.line, self.column = mark.line + 1, mark.column + 1


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core scalars, bounded depth and a bounded number of aliases.

    PyYAML's composer recurses once per nesting level; counting levels here stops a 10,000-deep
    ``[[[[...`` long before Python's recursion limit.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _TooBig(event.start_mark, f"more than {MAX_ALIASES} aliases (*name): refused")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _TooBig(event.start_mark, f"nested deeper than {MAX_DEPTH} levels: refused")
            node: yaml.Node = super().compose_node(parent, index)  # type: ignore[assignment]
            return node
        finally:
            self.depth -= 1


_Loader.yaml_implicit_resolvers = {}  # replace YAML 1.1's resolvers (yes/no, dates, 0755, 1:30) with 1.2 core's
_Loader.add_implicit_resolver(f"{_TAG}bool", _BOOL, list("tTfF"))
_Loader.add_implicit_resolver(f"{_TAG}int", _INT, list("-+0123456789"))
_Loader.add_implicit_resolver(f"{_TAG}float", _FLOAT, list("-+0123456789."))
_Loader.add_implicit_resolver(f"{_TAG}null", _NULL, ["~", "n", "N", ""])
_Loader.add_implicit_resolver(f"{_TAG}merge", re.compile(r"^(?:<<)$"), ["<"])


class _Builder:
    """Turns a composed node graph into plain data, expanding aliases within :data:`MAX_NODES`."""

    def __init__(self, doc: Document, env: Mapping[str, str]) -> None:
        self.doc = doc
        self.env = env
        self.nodes = 0

    def build(self, node: yaml.Node, path: Path_) -> Any:
        doc = self.doc
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _at(
                doc, node, path, f"the document expands to more than {MAX_NODES} values (each use of an alias counts)"
            )
        if len(path) > MAX_DEPTH:
            raise _at(doc, node, path, f"nested deeper than {MAX_DEPTH} levels (an alias that contains itself?)")
        doc.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            _check_tag(doc, node, path, f"{_TAG}seq")
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        value = _scalar(doc, node, path)
        if isinstance(value, str) and "$" in value:
            value = self._interpolate(value, path)
        return value

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        doc = self.doc
        _check_tag(doc, node, path, f"{_TAG}map")
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == f"{_TAG}merge":
                raise _at(doc, key_node, path, "merge keys (<<) are not supported; repeat the keys")
            if not isinstance(key_node, yaml.ScalarNode):
                raise _at(doc, key_node, path, "keys must be plain strings")
            _check_tag(doc, key_node, path, *_SCALAR_TAGS)
            key = str(key_node.value)
            if key in out:
                first = doc.positions[(*path, key)]
                raise _at(doc, key_node, (*path, key), f"duplicate key (first defined at line {first[0]})")
            doc.positions[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self.build(value_node, (*path, key))
        return out

    def _interpolate(self, value: str, path: Path_) -> str:
        """Expand ``${VAR}``, ``${VAR:-default}`` and ``$${``; record how the string was written."""
        doc, env = self.doc, self.env
        out: list[str] = []
        names: list[str] = []
        literal = False  # any text (or default text) besides the references
        pos = 0
        for token in _TOKEN.finditer(value):
            if token.start() < pos:
                continue
            if token.start() > pos:
                out.append(value[pos : token.start()])
                literal = True
            if token.group(0) == "$${":
                out.append("${")
                literal = True
                pos = token.end()
                continue
            close = value.find("}", token.end())
            body = value[token.end() : close] if close >= 0 else value[token.end() :]
            name, sep, default = body.partition(":-")
            if close < 0 or not _NAME.fullmatch(name):
                raise doc.error(
                    path, f"bad variable reference {shown('${' + body)}: write ${{NAME}} or ${{NAME:-default}}"
                )
            if "${" in default:
                raise doc.error(
                    path,
                    f"nested reference in ${{{name}:-...}} is not supported: "
                    f"give {name} its value in the environment instead",
                )
            names.append(name)
            literal = literal or bool(default)
            if env.get(name, "") != "":
                out.append(env[name])
            elif sep:
                out.append(default)
            else:
                raise doc.error(
                    path, f"environment variable {name} is not set (write ${{{name}:-default}} for a default)"
                )
            pos = close + 1
        if pos < len(value):
            out.append(value[pos:])
            literal = True
        if names:
            doc.written[path] = Written(names=tuple(names), sole=len(names) == 1 and not literal)
        return "".join(out)


def _scalar(doc: Document, node: yaml.Node, path: Path_) -> Any:
    """A scalar of the YAML 1.2 core schema; other tags are refused, never silently converted."""
    _check_tag(doc, node, path, *_SCALAR_TAGS)
    text = str(node.value)
    tag = node.tag.removeprefix(_TAG)
    try:
        if tag == "str":
            return text
        if tag == "null":
            if not _NULL.match(text):
                raise ValueError
            return None
        if tag == "bool":
            if not _BOOL.match(text):
                raise ValueError
            return text.lower() == "true"
        if tag == "int":
            if not _INT.match(text):
                raise ValueError
            if len(text) > MAX_INT_DIGITS:
                raise _at(doc, node, path, f"integer with more than {MAX_INT_DIGITS} digits: refused")
            return int(text[2:], 8) if text.startswith("0o") else int(text, 16 if text.startswith("0x") else 10)
        if not _FLOAT.match(text):
            raise ValueError
        lowered = text.lower()
        return float(
            lowered.replace(".inf", "inf").replace(".nan", "nan") if lowered[-4:] in {".inf", ".nan"} else text
        )
    except ValueError:
        raise _at(doc, node, path, f"{shown(text)} is not a valid !!{tag}") from None


def _check_tag(doc: Document, node: yaml.Node, path: Path_, *allowed: str) -> None:
    if node.tag not in allowed:
        short = node.tag.replace(_TAG, "!!")
        raise _at(doc, node, path, f"YAML tag {_clip(short)} is not supported here: write a plain value")


def _clip(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else f"{text[: MAX_SHOWN - 3]}..."


def _at(doc: Document, node: yaml.Node, path: Path_, message: str) -> ConfigError:
    return ConfigError(
        f"{doc.file}:{node.start_mark.line + 1}:{node.start_mark.column + 1}: {format_path(path)}: {message}"
    )
