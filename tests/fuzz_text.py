"""Mutations at the text and byte level (issue 9 kind 2): duplicate keys, YAML alias bombs and
recursive aliases, deep nesting, non-UTF-8 bytes, syntax errors, documents that are not a mapping, and
meaning-preserving rewrites (exponent-notation ``--set`` values, flow style, comments).  Values that only
exist as text are put in "slots" (``Draft.slot``) and spliced into the emitted YAML."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import yaml

from distllm_env.policies import PLACEMENT_POLICIES, ROUTING_POLICIES
from fuzz_core import _BYTES, Draft, _dotted, _flow, _set, _walk

def _exponent_text(x: float) -> str:
    """``x`` written the way users write numbers on a command line: ``0.5`` → ``5e-1`` (no dot)."""
    sign, digits, exp = Decimal(repr(x)).as_tuple()
    return f"{'-' if sign else ''}{int(''.join(map(str, digits)))}e{exp}"


def m_equivalent(d: Draft) -> None:
    """A rewrite that keeps the scenario's meaning: a float re-set with ``--set`` in exponent notation
    (``1e3``, issue 9), the file re-emitted in flow style, or comments and document markers added.  A
    case whose only mutations are these must succeed like its preset (``Case.must_succeed``)."""
    how = d.choice(["set-exponent", "flow-style", "comments"])
    floats = [(p, v) for p, v in _walk(d.data) if isinstance(v, float) and math.isfinite(v)]
    if how == "set-exponent" and floats:
        p, v = d.choice(floats)
        d.case.overrides.append(f"{_dotted(p)}={_exponent_text(v)}")
        d.note("equivalent", "--set", f" {_dotted(p)}={_exponent_text(v)} (was {v!r})", keeps_valid=True)
        return
    if how == "flow-style" and not (d.slots or d.text_edits or d.byte_edits):   # only on plain data
        d.text_edits.append(lambda t: _flow(yaml.safe_load(t)) + "\n")
        d.note("equivalent", "<text>", " re-emitted in flow style", keeps_valid=True)
        return
    d.text_edits.append(lambda t: t if t.startswith("%YAML") else
                        "%YAML 1.1\n---\n# fuzz: a comment\n\n" + t.replace("\n", "  # c\n", 1) + "...\n")
    d.note("equivalent", "<text>", " comments and document markers added", keeps_valid=True)



def m_duplicate_key(d: Draft) -> None:
    maps = [(p, v) for p, v in _walk(d.data) if isinstance(v, dict) and v]
    if d.rng.random() < 0.5 or not maps:
        key = d.choice(list(d.data))
        value = d.data[key] if d.rng.random() < 0.5 else "fuzz-duplicate"
        d.text_edits.append(lambda t, k=key, v=value: t + f"\n{k}: {_flow(v)}\n")
        d.note("duplicate-key", str(key), " (top level, appended)", must_fail=True)
        return
    p, node = d.choice(maps)
    k = d.choice(list(node))
    inner = _flow(node)[1:-1]
    dup = _flow({k: node[k]})[1:-1]
    _set(d.data, p, d.slot("{" + inner + ", " + dup + "}"))
    d.note("duplicate-key", _dotted(p + (k,)), "", must_fail=True)


def _bomb(levels: int, width: int) -> str:
    parts = [f"&b0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        parts.append(f"&b{i} [{', '.join([f'*b{i - 1}'] * width)}]")
    return "[" + ", ".join(parts) + "]"


def _is_slot(x: Any) -> bool:
    return isinstance(x, str) and x.startswith("@@FUZZSLOT")


def _value_target(d: Draft) -> tuple[tuple, str]:
    """A fresh place for a text-level value (never one an earlier slot holds): the description, a new
    policy option, or a random scalar leaf."""
    r = d.rng.random()
    if r < 0.4 and not _is_slot(d.data.get("description")):
        return ("description",), "description"
    if r < 0.7:
        pol = d.choice(sorted(PLACEMENT_POLICIES) + sorted(ROUTING_POLICIES))
        pd = d.data.get("policy_defaults")
        if not isinstance(pd, dict):
            d.data["policy_defaults"] = pd = {}
        if not isinstance(pd.get("options"), dict):
            pd["options"] = {}
        if not isinstance(pd["options"].get(pol), dict):
            pd["options"][pol] = {}
        key = f"fuzz{len(d.slots)}"
        return ("policy_defaults", "options", pol, key), f"policy_defaults.options.{pol}.{key}"
    leaves = [p for p, v in _walk(d.data) if not isinstance(v, (dict, list)) and not _is_slot(v)]
    if not leaves:
        return ("description",), "description"
    p = d.choice(leaves)
    return p, _dotted(p)


def m_alias_bomb(d: Draft) -> None:
    levels, width = int(d.rng.integers(3, 10)), int(d.rng.integers(5, 10))
    p, name = _value_target(d)
    _set(d.data, p, d.slot(_bomb(levels, width)))
    d.note("alias-bomb", name, f" ({width}^{levels})", must_fail=True)


def m_recursive_alias(d: Draft) -> None:
    p, name = _value_target(d)
    text = d.choice(["&r [*r]", "&r {a: *r}", "&r [1, [2, *r]]"])
    _set(d.data, p, d.slot(text))
    d.note("recursive-alias", name, f" {text}", must_fail=True)


def m_deep_nesting(d: Draft) -> None:
    depth = int(d.choice([200, 1000, 5000, 20000]))
    p, name = _value_target(d)
    opener, closer = ("[", "]") if d.rng.random() < 0.7 else ("{a: ", "}")
    _set(d.data, p, d.slot(opener * depth + "1" + closer * depth))
    d.note("deep-nesting", name, f" depth {depth}")


def m_non_utf8(d: Draft) -> None:
    how = d.choice(["name", "comment", "random", "utf16", "description"])
    if how == "name":
        d.data["name"] = "caf" + _BYTES + "E9"
        d.byte_edits.append(lambda b: b.replace(b"caf" + _BYTES.encode() + b"E9", b"caf\xe9"))
    elif how == "description":
        d.data["description"] = "x" + _BYTES + "FF"
        d.byte_edits.append(lambda b: b.replace(b"x" + _BYTES.encode() + b"FF", b"x\xff\xfe\x80"))
    elif how == "comment":
        d.byte_edits.append(lambda b: b"# caf\xe9 \xff\n" + b)
    elif how == "random":
        pos = float(d.rng.random())
        d.byte_edits.append(lambda b, pos=pos: b[: int(pos * len(b))] + b"\xc3\x28\xa0\xa1" + b[int(pos * len(b)):])
    else:
        d.byte_edits.append(lambda b: b"\xff\xfe" + b.decode("utf-8", "replace").encode("utf-16-le")[:-1])
    d.note("non-utf8", "<bytes>", f" ({how})", must_fail=True)


SYNTAX_ERRORS = ("fuzz: [unclosed, list\n", "fuzz: {unclosed: map\n", "fuzz: a: b: c\n", 'fuzz: "unterminated\n',
                 "\tfuzz: tab-indented\n", "- a list item in a mapping\n", "fuzz: ]\n", "? [a\n")


def m_syntax_error(d: Draft) -> None:
    snippet = d.choice(SYNTAX_ERRORS)
    pos = float(d.rng.random())

    def edit(t: str, s=snippet, pos=pos) -> str:
        lines = t.splitlines(keepends=True)
        # insert at a top-level boundary so the snippet is a document-level error
        starts = [i for i, ln in enumerate(lines) if ln[:1].isalpha()] or [0]
        i = starts[int(pos * len(starts))]
        return "".join(lines[:i]) + s + "".join(lines[i:])
    d.text_edits.append(edit)
    d.note("syntax-error", "<text>", f" {snippet.strip()!r}", must_fail=True)


def m_not_a_mapping(d: Draft) -> None:
    text = d.choice(["", "null\n", "[]\n", "42\n", "just a string\n", "---\na: 1\n---\nb: 2\n", "~\n"])
    d.text_edits.append(lambda t, text=text: text)
    d.note("not-a-mapping", "<text>", f" {text.strip()!r}", must_fail=True)


