"""Read YAML text into plain data plus the line of every key.

PyYAML's ``safe_load`` forgets where things came from and silently keeps the last
of two duplicate keys. We compose the node tree ourselves so that every later
problem (pydantic or semantic) can point at ``FILE:LINE``, and so that a key pasted
twice is reported instead of half-ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from failback.config.errors import Problem

__all__ = ["KeyPath", "YamlDocument", "dotted", "parse_yaml"]

KeyPath = tuple[str | int, ...]
"""Where a value sits in the document: mapping keys and list indexes."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
_COLLECTION_TAGS: dict[type[Node], str] = {
    MappingNode: "tag:yaml.org,2002:map",
    SequenceNode: "tag:yaml.org,2002:seq",
}
_MAX_NODES = 200_000  # guards against alias bombs ("billion laughs")


def dotted(path: KeyPath) -> str:
    """``('services', 'app', 'checks', 2, 'name')`` -> ``services.app.checks[2].name``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class YamlDocument:
    """Plain Python data of one YAML document and the 1-based line of each path."""

    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that exists in the file."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


class _Walker:
    """Turns a composed node tree into data, recording lines and duplicate keys."""

    def __init__(self, loader: yaml.SafeLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.lines: dict[KeyPath, int] = {}
        self.problems: list[Problem] = []
        self._visits = 0
        self._stack: set[int] = set()

    def problem(self, path: KeyPath, line: int, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(self.file, line, dotted(path), message, hint))

    def walk(self, node: Node, path: KeyPath) -> Any:
        self._visits += 1
        if self._visits > _MAX_NODES:
            raise _TooLarge(node)
        if id(node) in self._stack:
            self.problem(path, _line(node), "an alias refers to itself (recursive anchor)")
            return None
        self._stack.add(id(node))
        try:
            expected = _COLLECTION_TAGS.get(type(node))
            if expected is not None and node.tag != expected:
                self.problem(
                    path,
                    _line(node),
                    f"YAML tag {node.tag!r} is not supported",
                    "remove the tag (!something) and write the value plainly",
                )
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                return [self._item(item, (*path, i)) for i, item in enumerate(node.value)]
            return self._scalar(node, path)
        finally:
            self._stack.discard(id(node))

    def _item(self, node: Node, path: KeyPath) -> Any:
        self.lines.setdefault(path, _line(node))
        return self.walk(node, path)

    def _scalar(self, node: Node, path: KeyPath) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as err:
            self.problems.append(_syntax_problem(self.file, "", err, dotted(path)))
            return None
        except (ValueError, TypeError, OverflowError):
            # PyYAML crashes on look-alikes such as the date 2024-13-45: keep the text.
            return node.value if isinstance(node, ScalarNode) else None

    def _mapping(self, node: MappingNode, path: KeyPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        explicit: set[str] = set()
        merged: list[tuple[str, Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self._merge_sources(value_node, path))
                continue
            if not isinstance(key_node, ScalarNode):
                self.problem(
                    path,
                    _line(key_node),
                    "a key must be a plain word, not a list or a mapping",
                    "check the indentation and the ':' on this line",
                )
                continue
            key = str(key_node.value)
            child = (*path, key)
            if key in explicit:
                self.problem(
                    child,
                    _line(key_node),
                    f"duplicate key '{key}' (first at line {self.lines.get(child, '?')})",
                    "YAML keeps only one of them: remove or rename one",
                )
                continue
            explicit.add(key)
            self.lines[child] = _line(key_node)
            result[key] = self.walk(value_node, child)
        for key, key_node, value_node in merged:  # '<<: *anchor': explicit keys win
            if key in result:
                continue
            child = (*path, key)
            self.lines[child] = _line(key_node)
            result[key] = self.walk(value_node, child)
        return result

    def _merge_sources(self, value: Node, path: KeyPath) -> list[tuple[str, Node, Node]]:
        sources = value.value if isinstance(value, SequenceNode) else [value]
        pairs: list[tuple[str, Node, Node]] = []
        for source in sources:
            if not isinstance(source, MappingNode):
                self.problem(path, _line(source), "'<<' must merge a mapping (an &anchor)")
                continue
            for key_node, value_node in source.value:
                if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                    pairs.append((str(key_node.value), key_node, value_node))
        return pairs


class _TooLarge(Exception):
    def __init__(self, node: Node) -> None:
        self.node = node


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


_FRIENDLY = (
    ("expected <block end>", "the indentation does not line up with the lines above"),
    ("mapping values are not allowed", "unexpected ':'"),
    ("could not find expected ':'", "a key is missing its ':'"),
    ("found unexpected end of stream", "the file ends inside a quoted value"),
    ("but found another document", "a second YAML document follows the first"),
)
"""PyYAML's parser vocabulary, said the way a person would say it."""


def _syntax_problem(file: str, text: str, err: yaml.YAMLError, key: str = "") -> Problem:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    line = int(mark.line) + 1 if mark is not None else 1
    if isinstance(err, yaml.reader.ReaderError):
        line = text[: err.position].count("\n") + 1
        return Problem(
            file,
            line,
            key,
            f"character #x{err.character:04x} is not allowed in YAML",
            "remove the control character (it may have come from a copy-paste)",
        )
    # At the end of the file, PyYAML points past the last line: show the last real one.
    lines = text.splitlines()
    while lines and line > 1 and (line > len(lines) or not lines[line - 1].strip()):
        line -= 1
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None) or ""
    if "duplicate anchor" in context:
        problem, context = context.split(";")[0], ""
    friendly = next((text for start, text in _FRIENDLY if problem.startswith(start)), None)
    detail = f"{problem} ({context})" if context and context not in problem else problem
    message = f"{friendly} [{detail}]" if friendly else detail
    message = f"YAML error: {message}" if key else f"YAML syntax error: {message}"
    hint: str | None = "check the indentation and quoting on this line or the one above"
    if "\\t" in problem or "\t" in problem:
        hint = "YAML does not allow tabs for indentation: use spaces"
    elif "expected a single document" in message:
        hint = "a topology is one YAML document: remove the '---' separator"
    elif "could not determine a constructor" in problem:
        hint = "custom tags (!something) are not supported: remove the tag"
    elif "mapping values are not allowed" in problem:
        hint = "a value containing ': ' must be quoted, or a key is indented too far"
    return Problem(file, line, key, message.rstrip(), hint)


def parse_yaml(text: str, file: str) -> tuple[YamlDocument | None, list[Problem]]:
    """Parse ``text``; return the document (``None`` if unusable) and the problems found.

    Duplicate keys are problems but do not make the document unusable: the first
    occurrence is kept so that validation can still report everything else.
    """
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as err:  # a control character: PyYAML checks the text up front
        return None, [_syntax_problem(file, text, err)]
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as err:
            return None, [_syntax_problem(file, text, err)]
        except RecursionError:
            return None, [Problem(file, 1, "", "the document is nested too deeply")]
        if node is None or (isinstance(node, ScalarNode) and node.tag.endswith(":null")):
            return None, [
                Problem(
                    file,
                    None,
                    "",
                    "the file is empty",
                    "a topology needs at least 'sites:' and 'services:'; "
                    "start from examples/failback.yaml",
                )
            ]
        if not isinstance(node, MappingNode):
            kind = "a list" if isinstance(node, SequenceNode) else "a single value"
            return None, [
                Problem(
                    file,
                    _line(node),
                    "",
                    f"the top level must be a mapping (sites:, services:), found {kind}",
                    "start from examples/failback.yaml",
                )
            ]
        walker = _Walker(loader, file)
        walker.lines[()] = _line(node)
        try:
            data = walker.walk(node, ())
        except yaml.YAMLError as err:
            return None, [*walker.problems, _syntax_problem(file, text, err)]
        except _TooLarge as err:
            message = "the document expands to too many values (aliases nested too deeply)"
            return None, [Problem(file, _line(err.node), "", message)]
        except RecursionError:
            return None, [Problem(file, 1, "", "the document is nested too deeply")]
        return YamlDocument(data, walker.lines), walker.problems
    finally:
        loader.dispose()
