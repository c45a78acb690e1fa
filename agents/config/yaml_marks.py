"""Reading a config file as YAML while keeping where each key sits, so a problem names its line.

PyYAML's composer gives the node tree (every node has a start mark); the safe constructor turns
the same tree into plain Python values. Both are kept: values to validate, nodes to point at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: Config files are written by people: anything bigger is a mistake (or an attack on the parser).
MAX_FILE_BYTES = 256_000


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a config file, at a line a person can jump to."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass(frozen=True)
class Document:
    """A parsed YAML file: its values and its node tree (for line numbers)."""

    path: str
    data: Any
    node: yaml.Node | None

    def line(self, *path: str | int) -> int:
        """The line of the key (or list item) at ``path``; the nearest found ancestor's if the
        path goes on past what the file has."""
        return line_of(self.node, *path)

    def problem(self, message: str, *path: str | int) -> Problem:
        """A problem at ``path`` in this file."""
        return Problem(self.path, self.line(*path), message)


def read_yaml(path: Path, shown: str) -> Document | Problem:
    """Parse ``path`` (named ``shown`` in messages); a syntax error is a :class:`Problem`."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return Problem(shown, 1, f"cannot read the file ({exc.strerror or exc})")
    if len(raw) > MAX_FILE_BYTES:
        return Problem(shown, 1, f"the file is larger than {MAX_FILE_BYTES} bytes")
    text = raw.decode("utf-8", errors="replace")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = exc.problem or exc.context or "syntax error"
        return Problem(shown, line, f"not valid YAML: {what}")
    except yaml.YAMLError as exc:
        return Problem(shown, 1, f"not valid YAML: {exc}")
    finally:
        loader.dispose()
    return Document(shown, data, node)


def line_of(node: yaml.Node | None, *path: str | int) -> int:
    """1-based line of the mapping key or sequence item reached by ``path`` from ``node``."""
    if node is None:
        return 1
    line = node.start_mark.line + 1
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def duplicate_keys(doc: Document) -> list[Problem]:
    """Keys given twice in one mapping (YAML keeps the last silently: almost always a slip)."""
    found: list[Problem] = []

    def walk(node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        found.append(
                            Problem(
                                doc.path,
                                key.start_mark.line + 1,
                                f"{key.value!r} is given twice; only the last one would count",
                            )
                        )
                    seen.add(key.value)
                walk(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)

    if doc.node is not None:
        walk(doc.node)
    return found


def kind_of(value: Any) -> str:
    """How a YAML value reads to a person, for 'must be X, got Y' messages."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
