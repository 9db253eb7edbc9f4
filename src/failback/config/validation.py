"""Turn pydantic's validation errors into ``FILE:LINE: key: message (hint)`` problems.

pydantic reports a location tuple (with discriminator tags mixed in) and a message
written for programmers. People need the line in their file, the key as they wrote
it, plain words, and a suggestion: the closest valid key for a typo, the allowed
values for an enum, what a missing key is for.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any, Union

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from failback.config.errors import Problem
from failback.config.yaml_source import KeyPath, YamlDocument, dotted

__all__ = ["problems_from_validation"]

_TAG_KEYS = ("driver", "type", "via")
_SENSITIVE = ("password", "secret", "token")
_YAML_SPECIALS = "YAML reads yes/no/on/off/true/false as booleans and ~ or null as nothing"


def problems_from_validation(
    err: ValidationError, root: type[BaseModel], doc: YamlDocument, file: str, prefix: KeyPath = ()
) -> list[Problem]:
    """One problem per pydantic error, located in ``doc`` (``prefix``: where ``root`` sits).

    A misspelt required key is one mistake, not two: when an unknown key's closest
    match is a missing sibling, the "missing" problem is dropped and the unknown key
    says "did you mean".
    """
    problems = [_problem(error, root, doc, file, prefix) for error in err.errors(include_url=False)]
    misspelt = {
        _parent(p.key) + _suggested(p.hint)
        for p in problems
        if p.message.startswith("unknown key") and _suggested(p.hint)
    }
    return [
        p
        for p in problems
        if not (p.message == _MISSING and _parent(p.key) + _last(p.key) in misspelt)
    ]


_MISSING = "required key is missing"


def _suggested(hint: str | None) -> str:
    match = re.match(r"did you mean '([^']+)'\?", hint or "")
    return match.group(1) if match else ""


def _parent(key: str) -> str:
    return key.rsplit(".", 1)[0] + "." if "." in key else ""


def _last(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _problem(
    error: ErrorDetails, root: type[BaseModel], doc: YamlDocument, file: str, prefix: KeyPath
) -> Problem:
    data = _at(doc.data, prefix)
    loc = _clean_loc(tuple(error["loc"]), data)
    path: KeyPath = (*prefix, *loc)
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    hint: str | None = None
    line = doc.line_of(path)

    if kind == "missing":
        key = loc[-1] if loc else "?"
        message = _MISSING
        parent_line = doc.line_of(path[:-1])
        line = parent_line
        description = _field_description(root, data, loc)
        hint = f"add '{key}:'"
        if description:
            hint += f" ({description[:1].lower()}{description[1:]})"
    elif kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        allowed = _fields_at(root, data, loc[:-1])
        message = f"unknown key {key!r}"
        hint = _suggest(key, allowed, "allowed keys")
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = str(ctx.get("discriminator", "'type'")).strip("'")
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        if not expected:
            expected = _tags_at(root, data, loc, tag)
        path = (*path, tag)
        node = _at(data, loc)
        if kind == "union_tag_not_found" or not isinstance(node, dict) or tag not in node:
            line = doc.line_of(path[:-1])
            message = f"required key '{tag}' is missing"
            hint = f"add '{tag}:' with one of: {', '.join(expected)}"
        else:
            line = doc.line_of(path)
            word = "driver" if tag == "driver" else f"{tag}"
            message = f"unknown {word} {ctx.get('tag', node.get(tag))!r}"
            hint = _suggest(str(ctx.get("tag", "")), expected, f"known {word}s")
    elif kind == "literal_error":
        expected = re.findall(r"'([^']*)'|(\b\d+\b)", str(ctx.get("expected", "")))
        choices = [a or b for a, b in expected]
        message = f"must be one of {', '.join(choices)} (got {_show(value)})"
        hint = _suggest(str(value), choices, "allowed")
        if hint.startswith("allowed"):
            hint = None
    else:
        message = _plain_message(error)
        if kind == "value_error" and "; " in message:
            message, hint = message.split("; ", 1)  # our validators put the example last
        if not any(word in dotted(path) for word in _SENSITIVE) and kind != "value_error":
            message += f" (got {_show(value)})"
        if value is None and kind.endswith("_type"):
            hint = "the value is empty: write it after the ':' (or remove the key)"
        elif isinstance(value, bool) and kind == "string_type":
            hint = f"{_YAML_SPECIALS}: quote the value if you meant text"
    return Problem(file, line, dotted(path), message, hint)


_MESSAGES = {
    "dict_type": "expected a mapping (key: value lines)",
    "model_type": "expected a mapping (key: value lines)",
    "model_attributes_type": "expected a mapping (key: value lines)",
    "list_type": "expected a list ([a, b] or '- item' lines)",
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
    "path_type": "expected a path",
}


def _plain_message(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }
        bound = next(iter(ctx.values()), "?")
        return f"must be {words[kind]} {bound}"
    msg = str(error["msg"])
    return msg[:1].lower() + msg[1:]


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(word: str, choices: list[str], label: str) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    listed = ", ".join(choices)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"{label}: {listed}" if choices else "remove it"


def _at(data: Any, path: KeyPath) -> Any:
    for part in path:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not (in_dict or in_list):
            return None
        data = data[part]
    return data


def _clean_loc(loc: tuple[Any, ...], data: Any) -> KeyPath:
    """Keep the parts of pydantic's ``loc`` that are keys/indexes of the data.

    Discriminated unions add the tag (``'postgres'``) and some validators add their
    own names; neither exists in the user's file.
    """
    out: list[str | int] = []
    cur = data
    last = len(loc) - 1
    for i, part in enumerate(loc):
        if isinstance(cur, dict):
            is_tag = any(cur.get(k) == part for k in _TAG_KEYS) and (i < last or part not in cur)
            if isinstance(part, str) and part in cur and not is_tag:
                out.append(part)
                cur = cur[part]
            elif i == last and isinstance(part, str) and not is_tag:
                out.append(part)  # a missing key
                cur = None
        elif isinstance(cur, list):
            if isinstance(part, int) and 0 <= part < len(cur):
                out.append(part)
                cur = cur[part]
        elif cur is None and i == last and isinstance(part, str):
            out.append(part)  # a key missing from an empty section
    return tuple(out)


def _unwrap(tp: Any, data: Any) -> Any:
    """The concrete type at a position, given the data there (resolves unions by tag)."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            chosen = None
            for member in members:
                if isinstance(member, type) and issubclass(member, BaseModel):
                    for key in _TAG_KEYS:
                        field = member.model_fields.get(key)
                        if field is None or not isinstance(data, dict):
                            continue
                        if data.get(key) in typing.get_args(field.annotation):
                            chosen = member
            if chosen is None and len(members) == 1:
                chosen = members[0]
            if chosen is None:
                return None
            tp = chosen
            continue
        return tp


def _type_at(root: type[BaseModel], data: Any, path: KeyPath, resolve: bool = True) -> Any:
    tp: Any = root
    cur = data
    for part in path:
        tp = _unwrap(tp, cur)
        if tp is None:
            return None
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None
            tp = field.annotation
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin is list:
            tp = typing.get_args(tp)[0]
        else:
            return None
        cur = _at(cur, (part,))
    return _unwrap(tp, cur) if resolve else tp


def _fields_at(root: type[BaseModel], data: Any, path: KeyPath) -> list[str]:
    tp = _type_at(root, data, path)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _tags_at(root: type[BaseModel], data: Any, path: KeyPath, tag: str) -> list[str]:
    """The values ``tag`` may take at ``path`` (the drivers, the check types)."""
    tp = _type_at(root, data, path, resolve=False)
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    tags: list[str] = []
    for member in typing.get_args(tp):
        if isinstance(member, type) and issubclass(member, BaseModel):
            field = member.model_fields.get(tag)
            if field is not None:
                tags.extend(str(a) for a in typing.get_args(field.annotation))
    return tags


def _field_description(root: type[BaseModel], data: Any, loc: KeyPath) -> str | None:
    if not loc:
        return None
    tp = _type_at(root, data, loc[:-1])
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(str(loc[-1]))
        if field is not None and field.description:
            return field.description.rstrip(".")
    return None
