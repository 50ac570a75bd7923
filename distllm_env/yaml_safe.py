"""The one YAML reader for every data file: scenario files, ``--set`` values and agent YAML.

Data files are inert (docs/scenarios.md, "Trust boundary and limits"): they can only hold
``null``, booleans, integers, floats, strings, lists and mappings.  On top of PyYAML's
``SafeLoader`` (which never imports or calls Python code) this loader

* refuses every tag that would build another type (``!!binary``, ``!!set``, ``!!omap``,
  ``!!python/…``, local ``!tags``); a timestamp-looking scalar stays a string;
* refuses aliases (``*name``), so an "alias bomb" cannot expand and a recursive alias cannot
  recurse;
* refuses duplicate keys (YAML says keys are unique; PyYAML silently keeps the last one);
* bounds the nesting depth (:data:`~distllm_env.limits.MAX_YAML_DEPTH`) and the size
  (:data:`~distllm_env.limits.MAX_YAML_BYTES`);
* reads floats as YAML 1.2 does: ``1e3``, ``1E-3``, ``.5`` and ``1.0e300`` are floats (YAML 1.1,
  PyYAML's default, reads ``1e3`` as a string);
* decodes UTF-8 strictly and reports every problem as one line naming the file, line and column.

Every error is a :class:`~distllm_env.errors.ScenarioError`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from .errors import ScenarioError
from .limits import MAX_YAML_BYTES, MAX_YAML_DEPTH

#: YAML 1.2 core-schema float (https://yaml.org/spec/1.2.2/#1032-tag-resolution), plus PyYAML's
#: spellings of infinity and NaN.
FLOAT_RE = re.compile(r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
                          |[-+]?\.(?:inf|Inf|INF)
                          |\.(?:nan|NaN|NAN))$""", re.X)
_FLOAT_TAG = "tag:yaml.org,2002:float"
_REFUSED_TAGS = ("tag:yaml.org,2002:binary", "tag:yaml.org,2002:set", "tag:yaml.org,2002:omap",
                 "tag:yaml.org,2002:pairs")


class _DataError(yaml.MarkedYAMLError):
    """A data-file rule was broken (alias, duplicate key, depth); ``field`` is the dotted path."""

    def __init__(self, field: str, problem: str, mark):
        super().__init__(problem=problem, problem_mark=mark)
        self.field = field


class DataLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` restricted to inert JSON-like data (see the module docstring)."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != _FLOAT_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    yaml_constructors = dict(yaml.SafeLoader.yaml_constructors)

    def __init__(self, stream):
        super().__init__(stream)
        self._path: list[str] = []

    # --- composition: aliases, depth, duplicate keys ---------------------------------------------
    def compose_node(self, parent, index):
        """Compose one node, refusing aliases and nesting deeper than ``MAX_YAML_DEPTH``.

        Raises:
            yaml.MarkedYAMLError: (a private subclass carrying the dotted field path) on an alias or too
                deep a nesting; :func:`load_yaml_text` turns it into a :class:`ScenarioError`."""
        if self.check_event(AliasEvent):
            event = self.get_event()
            raise _DataError(self._field(), f"YAML aliases (*{event.anchor}) are not allowed in data files; "
                                            "write the value out", event.start_mark)
        if len(self._path) >= MAX_YAML_DEPTH and self.check_event(SequenceStartEvent, MappingStartEvent):
            raise _DataError("", f"nested deeper than {MAX_YAML_DEPTH} levels", self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def compose_sequence_node(self, anchor):
        start = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(SequenceNode, None, start.implicit)
        node = SequenceNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        index = 0
        while not self.check_event(yaml.SequenceEndEvent):
            self._path.append(str(index))
            node.value.append(self.compose_node(node, index))
            self._path.pop()
            index += 1
        node.end_mark = self.get_event().end_mark
        return node

    def compose_mapping_node(self, anchor):
        """Compose a mapping, refusing a key that appears twice.

        Raises:
            yaml.MarkedYAMLError: (a private subclass carrying the key's dotted path) on a duplicate key;
                :func:`load_yaml_text` turns it into a :class:`ScenarioError`."""
        start = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(MappingNode, None, start.implicit)
        node = MappingNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        seen: dict[Any, int] = {}
        while not self.check_event(yaml.MappingEndEvent):
            key_event = self.peek_event()
            self._path.append("?")
            key_node = self.compose_node(node, None)
            self._path.pop()
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            self._path.append(str(key) if key is not None else "?")
            if key is not None:
                if key in seen:
                    raise _DataError(self._field(), f"duplicate key (first at line {seen[key]})",
                                     key_event.start_mark)
                seen[key] = key_event.start_mark.line + 1
            value_node = self.compose_node(node, key_node)
            self._path.pop()
            node.value.append((key_node, value_node))
        node.end_mark = self.get_event().end_mark
        return node

    def _field(self) -> str:
        return ".".join(self._path)

    # --- construction: only inert types ----------------------------------------------------------
    def construct_yaml_int(self, node):
        """An ``int`` scalar, refusing one too long for Python's int parser.

        Raises:
            yaml.constructor.ConstructorError: the integer literal is too large to convert."""
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise ConstructorError(None, None, f"integer {_short(node.value)} is too large", node.start_mark) from None

    def refuse_tag(self, node):
        """Constructor for every tag outside plain data.

        Raises:
            yaml.constructor.ConstructorError: always (the tag is not allowed in data files)."""
        raise ConstructorError(None, None, f"tag {_short(repr(node.tag), 60)} is not allowed in data files", node.start_mark)


DataLoader.add_implicit_resolver(_FLOAT_TAG, FLOAT_RE, list("-+0123456789."))
DataLoader.add_constructor("tag:yaml.org,2002:int", DataLoader.construct_yaml_int)
DataLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)
for _tag in _REFUSED_TAGS:
    DataLoader.add_constructor(_tag, DataLoader.refuse_tag)
DataLoader.add_constructor(None, DataLoader.refuse_tag)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_line(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return f"{where}{_short(' '.join(str(problem).split()), 160)}"
    return _short(" ".join(str(exc).split()), 200)


def decode_utf8(data: bytes, source: str) -> str:
    """``data`` decoded as strict UTF-8 (a leading BOM is dropped).

    Raises:
        ScenarioError: ``SOURCE: not UTF-8 text (byte 0xe9 at offset N)``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(source, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    return text[1:] if text.startswith("\ufeff") else text


def load_yaml_text(text: str, source: str = "<yaml>") -> Any:
    """Parse one YAML document of inert data (see the module docstring).

    ``source`` names the file (or ``--set`` value) in error messages.  Returns ``None`` for an
    empty document, else a plain ``dict`` / ``list`` / scalar.

    Raises:
        ScenarioError: on a syntax error (``SOURCE: invalid YAML at line L, column C: …``), an alias,
            a duplicate key (the error's path is the key's dotted path), nesting deeper than
            ``MAX_YAML_DEPTH``, a refused tag, or text over ``MAX_YAML_BYTES``."""
    if len(text) > MAX_YAML_BYTES:
        raise ScenarioError(source, f"larger than {MAX_YAML_BYTES} bytes; data files are limited to that size")
    loader = DataLoader(text)
    try:
        return loader.get_single_data()
    except _DataError as exc:
        mark = exc.problem_mark
        raise ScenarioError(exc.field or source, f"{exc.problem} ({source} line {mark.line + 1}, "
                                                 f"column {mark.column + 1})") from None
    except (yaml.YAMLError, ComposerError) as exc:
        raise ScenarioError(source, f"invalid YAML at {_one_line(exc)}") from None
    except RecursionError:  # pragma: no cover - the depth bound stops this first
        raise ScenarioError(source, f"nested deeper than {MAX_YAML_DEPTH} levels") from None
    finally:
        loader.dispose()


def load_yaml_bytes(data: bytes, source: str = "<yaml>") -> Any:
    """:func:`load_yaml_text` of ``data`` decoded with :func:`decode_utf8`.

    Raises:
        ScenarioError: ``data`` is larger than ``MAX_YAML_BYTES``, not UTF-8, or as :func:`load_yaml_text`."""
    if len(data) > MAX_YAML_BYTES:
        raise ScenarioError(source, f"larger than {MAX_YAML_BYTES} bytes; data files are limited to that size")
    return load_yaml_text(decode_utf8(data, source), source)


def load_yaml_file(path: "str | os.PathLike", source: str | None = None) -> Any:
    """Read and parse a YAML data file (or any object with ``read_bytes()``, e.g. an
    ``importlib.resources`` traversable).

    Raises:
        ScenarioError: the file cannot be read, or as :func:`load_yaml_text` / :func:`decode_utf8`."""
    src = source if source is not None else os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)
    p = Path(path) if isinstance(path, (str, os.PathLike)) else path
    try:
        if isinstance(p, Path) and p.stat().st_size > MAX_YAML_BYTES:
            raise ScenarioError(src, f"larger than {MAX_YAML_BYTES} bytes; data files are limited to that size")
        data = p.read_bytes()
    except OSError as exc:
        raise ScenarioError(src, f"cannot read file: {exc.strerror or exc}") from None
    return load_yaml_bytes(data, src)


class _DataDumper(yaml.SafeDumper):
    """``SafeDumper`` that also quotes strings :class:`DataLoader` would read as YAML 1.2 floats
    (``"1e3"``), so that :func:`dump_yaml` and :func:`load_yaml_text` round-trip."""


_DataDumper.add_implicit_resolver(_FLOAT_TAG, FLOAT_RE, list("-+0123456789."))


def dump_yaml(data: Any) -> str:
    """``data`` (plain dicts, lists and scalars) as block YAML, keys in insertion order; reads back
    unchanged with :func:`load_yaml_text`."""
    return yaml.dump(data, Dumper=_DataDumper, sort_keys=False)


def parse_float_literal(text: str) -> float | None:
    """``float(text)`` if ``text`` is a YAML 1.2 float literal (``1e3``, ``.5``, ``-1.5E-3``), else
    ``None``."""
    s = text.strip()
    if len(s) > 400 or not FLOAT_RE.match(s):
        return None
    low = s.lower()
    if low.endswith((".inf",)):
        return float("-inf") if s.startswith("-") else float("inf")
    if low == ".nan":
        return float("nan")
    return float(s)


__all__ = ["DataLoader", "FLOAT_RE", "decode_utf8", "dump_yaml", "load_yaml_bytes", "load_yaml_file", "load_yaml_text",
           "parse_float_literal"]
