"""YAML with positions: every mapping key and sequence item keeps its ``line:col``.

``load_yaml(path)`` returns a :class:`Document`: plain dicts/lists/scalars (``data``) plus a side
table ``positions`` keyed by JSON path tuples (``("tools", 0, "function", "name")``), 1-based.
Anything wrong with the file itself (not UTF-8, binary, tabs in indentation, malformed YAML,
duplicate keys, recursive aliases) raises :class:`~asstctl.errors.SpecError` with every problem
as ``path:line:col: message``; never a traceback.

``Document.where(path)`` gives ``"file:line:col"`` for a JSON path, either a tuple or a string
such as ``"$.conversations[0].turns[1]"``, falling back to the nearest parent with a position.
Files are shown as given: pass a path relative to the working directory to get one in messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asstctl.errors import SpecError

JsonPath = tuple  # of str (mapping keys) and int (sequence indexes)
MAX_NODES = 200_000  # aliases can expand a small file exponentially ("billion laughs")
_SKIP = object()
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"  # a `=` key, which flatten_mapping makes a string
_STR = "tag:yaml.org,2002:str"
_JSON_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")}
_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]")


@dataclass
class Document:
    data: Any
    positions: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    path: Path | str = "<string>"

    def position(self, path: JsonPath | str) -> tuple[int, int]:
        """(line, col) of ``path`` or of its nearest parent that has one; (1, 1) at worst."""
        steps = parse_path(path) if isinstance(path, str) else tuple(path)
        while steps:
            if steps in self.positions:
                return self.positions[steps]
            steps = steps[:-1]
        return self.positions.get((), (1, 1))

    def where(self, path: JsonPath | str = ()) -> str:
        line, col = self.position(path)
        return f"{self.path}:{line}:{col}"


def parse_path(text: str) -> JsonPath:
    """``"$.a.b[0]['c d']"`` → ``("a", "b", 0, "c d")``."""
    steps: list[str | int] = []
    for match in _STEP.finditer(text.lstrip("$")):
        name, index, quoted = match.groups()
        steps.append(int(index) if index is not None else (name if name is not None else quoted))
    return tuple(steps)


def load_yaml(path: Path | str, display: Path | str | None = None) -> Document:
    """Read and parse one YAML file; ``display`` is how messages name it (default: ``path``)."""
    from asstctl.spec.files import FileProblem, read_bytes

    shown = display if display is not None else path
    try:
        raw = read_bytes(path)
    except FileProblem as problem:
        raise SpecError([f"{shown}:1:1: this file {problem}"]) from None
    return parse_yaml(decode(raw, shown), shown)


def decode(raw: bytes, shown: Path | str) -> str:
    """The text of a file, or one clear error for binary or non-UTF-8 content."""
    if b"\x00" in raw:
        raise SpecError([f"{shown}:1:1: this is a binary file, not YAML text"])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line, col = _line_col(raw, error.start)
        raise SpecError([
            f"{shown}:{line}:{col}: not UTF-8 text (byte 0x{raw[error.start]:02x}); save the file as UTF-8"
        ]) from None


def _line_col(raw: bytes, offset: int) -> tuple[int, int]:
    line_start = raw.rfind(b"\n", 0, offset) + 1
    return raw.count(b"\n", 0, offset) + 1, offset - line_start + 1


def parse_yaml(text: str, shown: Path | str = "<string>") -> Document:
    """YAML text as a Document; a ``.json`` file is read as JSON (strictly: no trailing comma, single quote or
    comment), then as YAML for the positions (JSON is YAML, bar a tab in indentation: no positions then)."""
    data = json_data(text, shown) if str(shown).lower().endswith(".json") else _SKIP
    try:
        node = _compose(text, shown)
    except SpecError as error:  # tabs in indentation are the likeliest cause: name them instead
        if data is not _SKIP:
            return Document(data, {}, shown)
        raise SpecError(_tab_problems(text, shown) or error.problems) from None
    builder = _Builder(shown)
    built = builder.build(node, ()) if node is not None else None
    if builder.problems:
        raise SpecError(builder.problems)
    return Document(built if data is _SKIP else data, builder.positions, shown)


def _tab_problems(text: str, shown: Path | str) -> list[str]:
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent and line.strip():
            problems.append(f"{shown}:{number}:{indent.index(chr(9)) + 1}: tab character in indentation; YAML indents with spaces only")
    return problems


def _compose(text: str, shown: Path | str):
    import yaml

    loader = _loader_class()(text)
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise SpecError([f"{shown}:{line}:{col}: malformed YAML: {_yaml_reason(error)}{yaml_fix(error)}"]) from None
    except yaml.reader.ReaderError:
        raise SpecError(_unprintable_problems(text, shown)) from None
    except yaml.YAMLError as error:
        raise SpecError([f"{shown}:1:1: malformed YAML: {error}"]) from None
    finally:
        loader.dispose()


_UNPRINTABLE = "[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"  # YAML 1.1 printable


def _unprintable_problems(text: str, shown: Path | str) -> list[str]:
    """Every character YAML refuses (a control character, most often pasted in unseen), at its line:col as an
    editor counts them (libyaml's own position is a byte offset, not a line)."""
    problems = []
    for match in re.finditer(_UNPRINTABLE, text):
        offset = match.start()
        line, col = text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)
        code = f"U+{ord(match.group()):04X}"
        problems.append(f"{shown}:{line}:{col}: YAML does not allow the character {code} (a control character, "
                        f"invisible in most editors); remove the invisible character {code}, or write it as "
                        f"`\\u{ord(match.group()):04x}` in a double-quoted string if it is meant")
    return problems[:20] or [f"{shown}:1:1: YAML does not allow a character of this file; save it as plain UTF-8 text"]


def json_data(text: str, shown: Path | str) -> Any:
    """A ``.json`` file's data, read by JSON's rules: its errors at their line:col, with what to write."""
    import json

    def no_constant(word: str) -> None:
        raise json.JSONDecodeError(f"`{word}` is not JSON: write a number or null", text, text.find(word))

    try:
        return json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as error:
        raise SpecError([f"{shown}:{error.lineno}:{error.colno}: malformed JSON: {_json_reason(text, error)}"]) from None


def _json_reason(text: str, error) -> str:
    at = text[error.pos:error.pos + 1]
    before = text[:error.pos].rstrip()
    if at in "}]" and at and before.endswith(","):
        return f"a comma after the last item; remove the `,` before `{at}` (JSON allows none there)"
    if at == "'":
        return "single quotes; JSON needs double quotes: write `\"...\"`"
    if at in ("#", "/") and at:
        return "a comment; JSON has none: remove it (or use a .yaml file, where `#` starts a comment)"
    if error.msg.startswith("Invalid control character"):
        code = f"U+{ord(at):04X}" if at else "here"
        return f"an invisible control character in a string; remove the invisible character {code} " \
               f"(or write it as `\\u{ord(at):04x}`)"
    if error.msg.startswith("`"):
        return error.msg
    return f"{error.msg} (JSON needs double-quoted keys and strings, commas between items and none after the last)"


def _yaml_reason(error) -> str:
    reason = error.problem or error.context or "cannot parse"
    mark = error.context_mark
    if error.problem and error.context and mark is not None:
        reason += f" ({error.context} started at line {mark.line + 1}, column {mark.column + 1})"
    return reason


# PyYAML's words for the usual mistakes -> what to do about them
_YAML_FIXES = (
    ("mapping values are not allowed", "a value that contains `: ` must be quoted (`key: \"a: b\"`), "
                                       "or this line is indented more than the key above it"),
    ("could not find expected ':'", "every line of a mapping is `key: value`; check for a missing `:` "
                                    "or an unclosed quote above"),
    ("expected <block end>", "this line's indentation does not match its siblings: indent items of one "
                             "mapping or list by the same number of spaces"),
    ("found unexpected end of stream", "a quote or bracket is never closed"),
    ("while scanning a quoted scalar", "a quote is never closed"),
    ("that cannot start any token", "quote the value (`key: \"@value\"`): YAML reserves this character at the start"),
    ("found undefined alias", "define the anchor (`&name`) before using `*name`, or quote a value starting with `*`"),
    ("expected ',' or ']'", "a `[` is not closed, or an item inside it needs quotes"),
    ("expected ',' or '}'", "a `{` is not closed, or an item inside it needs quotes"),
    ("while parsing a flow", "a `[` or `{` is not closed, or items inside it need quotes"),
    ("did not find expected key", "indentation: a line is indented less or more than its mapping; "
                                  "or a `-` list item sits where a `key:` is expected"),
    ("did not find expected '-' indicator", "indentation: every item of a list starts with `-` at the same column"),
)  # ("while scanning a simple key" comes only with "could not find expected ':'", above)


def yaml_fix(error) -> str:
    """``; fix: ...`` for a PyYAML error we know, or a general hint."""
    text = f"{error.problem or ''} {error.context or ''}"
    fix = next((fix for words, fix in _YAML_FIXES if words in text), None)
    return f"; {fix or 'check the indentation (spaces only) and quote values with `: `, `#` or a leading `*&!@`'}"


def _loader_class():
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Builder:
    """Turns a composed YAML node tree into plain data, recording positions and duplicate keys."""

    def __init__(self, shown: Path | str):
        import yaml

        self.yaml = yaml
        self.shown = shown
        self.constructor = yaml.SafeLoader("")  # constructs scalars (ints, bools, timestamps...)
        self.positions: dict[JsonPath, tuple[int, int]] = {}
        self.problems: list[str] = []
        self.active: set[int] = set()
        self.count = 0
        self.scalar = yaml.ScalarNode

    def build(self, node, path: JsonPath) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise SpecError([f"{self._at(node)}: too many values (aliases expand to more than {MAX_NODES})"])
        if node.tag == _STR and node.__class__ is self.scalar:  # most values: text as it is, nothing inside
            return node.value
        if id(node) in self.active:
            raise SpecError([f"{self._at(node)}: recursive alias; YAML anchors must not contain themselves"])
        self.active.add(id(node))
        try:
            return self._build(node, path)
        finally:
            self.active.discard(id(node))

    def _build(self, node, path: JsonPath) -> Any:
        if node.tag not in _JSON_TAGS:
            self.problems.append(f"{self._at(node)}: unsupported YAML tag `{node.tag}`; use plain values "
                                 "(text, numbers, true/false, null, lists and mappings)")
            return None
        if isinstance(node, self.yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, self.yaml.SequenceNode):
            return [self._item(child, path + (i,)) for i, child in enumerate(node.value)]
        if node.tag == _TIMESTAMP:  # JSON has no dates: keep the text as written
            return node.value
        try:
            return self.constructor.construct_object(node, deep=True)
        except self.yaml.YAMLError as error:
            self.problems.append(f"{self._at(node)}: {getattr(error, 'problem', None) or error}")
            return None

    def _item(self, node, path: JsonPath) -> Any:
        self.positions[path] = _mark(node)
        return self.build(node, path)

    def _mapping(self, node, path: JsonPath) -> dict[Any, Any]:
        """A mapping; keys merged in by ``<<`` come first and may be overridden, own keys must be unique."""
        own_count = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE)
        try:
            if own_count < len(node.value) or any(key_node.tag == _VALUE for key_node, _ in node.value):
                self.constructor.flatten_mapping(node)
        except self.yaml.YAMLError as error:
            self.problems.append(f"{self._at(node)}: {getattr(error, 'problem', None) or error}")
            return {}
        first_own = len(node.value) - own_count
        out: dict[Any, Any] = {}
        own: set[Any] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = self._key(key_node)
            if key is _SKIP or (index >= first_own and not self._first(key_node, key, path, own)):
                continue
            self.positions[path + (key,)] = _mark(key_node)
            out[key] = self.build(value_node, path + (key,))
        return out

    def _first(self, key_node, key: Any, path: JsonPath, own: set[Any]) -> bool:
        """Whether this own key is new; a duplicate is reported."""
        if key in own:
            first = self.positions.get(path + (key,), (0, 0))
            self.problems.append(f"{self._at(key_node)}: duplicate key `{key}` (first on line {first[0]}); "
                                 "remove one of them")
            return False
        own.add(key)
        return True

    def _key(self, node) -> Any:
        if node.tag == _STR and node.__class__ is self.scalar:
            return node.value
        if not isinstance(node, self.yaml.ScalarNode):
            self.problems.append(f"{self._at(node)}: a mapping key must be a plain value, not a list or mapping")
            return _SKIP
        key = self._build(node, ())
        return key if isinstance(key, (str, int, float, bool)) or key is None else str(key)

    def _at(self, node) -> str:
        line, col = _mark(node)
        return f"{self.shown}:{line}:{col}"


def _mark(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1
