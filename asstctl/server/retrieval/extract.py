"""Text extraction: file bytes + filename -> plain text, with well-kept libraries, streamed.

``extract_pieces`` reads a binary file object and yields the text in pieces, so a caller can stop
(a limit) without the whole text ever being held: UTF-8 text for ``.txt .md`` and source files
(read 1 MB at a time), ``.html``/``.htm`` (lxml's HTML parser fed incrementally with a target: no
tree is built, so neither tiny elements nor deep nesting cost memory), ``.docx`` (``word/document.xml``
parsed incrementally from the zip with lxml, one paragraph or table row at a time, each freed once read), ``.pdf`` (pypdf, page by
page), ``.pptx`` (python-pptx) and ``.json`` (re-printed with an indent of 2 as it is read, token by
token: the document is never held parsed; files up to 64 KB are parsed whole, faster and bounded). Anything else raises
:class:`ExtractError` with code ``unsupported_file``; bytes a parser rejects raise it with code
``invalid_file``. A file past one of :class:`ExtractLimits` (a zip part inflating over 100x, too many
paragraphs or elements, JSON nested too deep, a PDF stream inflating too far, lxml's own limits on a
text node's size and nesting) fails at once with ``invalid_file``, the message naming the limit.
"""

from __future__ import annotations

import codecs
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO, Callable, Iterator

TEXT_EXTENSIONS = frozenset(
    ".txt .md .markdown .rst .csv .tsv .log .xml .yaml .yml .toml .ini .cfg .tex"
    " .py .js .mjs .cjs .ts .tsx .jsx .go .java .kt .scala .c .h .cc .cpp .cxx .hpp .cs .rb .php"
    " .rs .swift .sh .bash .zsh .ps1 .css .scss .less .sql .r .lua .pl .m .vue .svelte".split()
)
READ = 1 << 20  # bytes read at a time
SKIPPED_TAGS = frozenset({"script", "style", "noscript", "template"})
W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


@dataclass(frozen=True)
class ExtractLimits:
    """Limits past which a file fails at once, named, instead of taking a worker's time or memory."""

    max_expansion: int = 100  # a DOCX/PPTX part over EXPANSION_FLOOR may inflate this many times its zipped size
    max_elements: int = 4_000_000  # elements of an HTML page
    max_paragraphs: int = 1_000_000  # paragraphs and table rows of a DOCX (each read in Python: ~6 us)
    max_json_depth: int = 1_000  # nesting of JSON arrays and objects (json's own recursion stops near 1,000)
    pdf_stream_mb: int = 75  # bytes a PDF stream may inflate to (pypdf's own default: 75,000,000)


LIMITS = ExtractLimits()
EXPANSION_FLOOR = 1 << 20  # a zip part inflating to at most this is not checked for its ratio


class ExtractError(Exception):
    """The file cannot be turned into text: ``code`` is ``unsupported_file`` or ``invalid_file``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def extension(filename: str) -> str:
    return PurePosixPath(filename or "").suffix.lower()


def reader_for(filename: str) -> Callable[[BinaryIO, ExtractLimits], Iterator[str]]:
    """The streaming reader of a file name; raises ``unsupported_file`` when there is none."""
    ext = extension(filename)
    reader = READERS.get(ext) or (_text if ext in TEXT_EXTENSIONS else None)
    if reader is None:
        raise ExtractError(
            "unsupported_file",
            f"The file type of {filename!r} is not supported for retrieval; use one of "
            ".txt .md .html .json .pdf .docx .pptx or a source file.",
        )
    return reader


def extract_pieces(filename: str, source: BinaryIO, limits: ExtractLimits = LIMITS) -> Iterator[str]:
    """The text of a file in pieces; raises :class:`ExtractError` when it has none we can read or it
    passes one of ``limits``."""
    reader = reader_for(filename)
    seen = False
    try:
        for piece in reader(source, limits):
            seen = seen or bool(piece.strip())
            yield piece
    except ExtractError as exc:
        if exc.code == "limit":
            raise ExtractError("invalid_file", f"The file {filename!r} could not be indexed: {exc.message}.") from None
        raise
    except (MemoryError, GeneratorExit):
        raise
    except Exception as exc:  # a parser's own error: the bytes are not what the name says
        raise ExtractError("invalid_file", f"The file {filename!r} could not be parsed as {extension(filename)}: "
                                           f"{exc}") from None
    if not seen:
        raise ExtractError("invalid_file", f"The file {filename!r} contains no extractable text.")


def extract_text(filename: str, data: bytes, limits: ExtractLimits = LIMITS) -> str:
    """The whole text of a file held in memory (small files; see :func:`extract_pieces`)."""
    return "".join(extract_pieces(filename, io.BytesIO(data), limits))


def _limit(why: str) -> ExtractError:
    """A limit passed (``why`` completes "could not be indexed: ..."); ``extract_pieces`` names the file."""
    return ExtractError("limit", why)


def _decoded(source: BinaryIO) -> Iterator[str]:
    """UTF-8 text (a BOM dropped) 1 MB at a time; binary or invalid bytes raise ``invalid_file``."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    offset = 0
    while True:
        data = source.read(READ)
        if offset == 0 and b"\x00" in data[:8192]:
            raise ExtractError("invalid_file", "The file looks binary (it contains NUL bytes), not text.")
        try:
            text = decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise ExtractError("invalid_file", f"The file is not valid UTF-8 text ({exc.reason} at byte "
                                               f"{offset + exc.start}).") from None
        offset += len(data)
        if text:
            yield text
        if not data:
            return


def _text(source: BinaryIO, limits: ExtractLimits) -> Iterator[str]:
    yield from _decoded(source)


_JSON_TOKEN = re.compile(r'[ \t\n\r]*(?:([{}\[\],:])|("[^"\\\x00-\x1f]*")|(")|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?'
                         r'(?:[eE][-+]?[0-9]+)?|true|false|null|NaN|-?Infinity))')
_PLAIN_INT = re.compile(r"-?[1-9][0-9]*|0")
WHOLE_JSON = 64 << 10  # JSON files up to this size are parsed whole


class _Rest:
    """A file object that answers ``head`` (bytes already read from ``source``) first, then the rest."""

    def __init__(self, head: bytes, source: BinaryIO):
        self.head, self.source = head, source

    def read(self, size: int) -> bytes:
        if self.head:
            data, self.head = self.head[:size], self.head[size:]
            return data
        return self.source.read(size)


def _json(source: BinaryIO, limits: ExtractLimits) -> Iterator[str]:
    """JSON re-printed as ``json.dumps(value, indent=2, ensure_ascii=False)`` would, streamed: a walk of
    its tokens holding one scalar at a time, never the parsed document (a string without escapes is
    copied as it is; other scalars are parsed and printed as ``json`` does)."""
    from json.decoder import scanstring
    from json.encoder import encode_basestring

    head = b""
    while len(head) <= WHOLE_JSON:
        data = source.read(WHOLE_JSON + 1 - len(head))
        if not data:
            break
        head += data
    if len(head) <= WHOLE_JSON:  # small: parsed whole (bounded by its size, and 4x faster than the walk)
        try:
            whole = json.dumps(json.loads("".join(_decoded(io.BytesIO(head)))), indent=2, ensure_ascii=False)
        except RecursionError:  # nested past json's recursion: walked below, which counts the depth
            whole = None
        if whole is not None:
            yield whole
            return
    pieces, out, size = _decoded(_Rest(head, source)), [], 0
    buf, pos, final = "", 0, False
    stack: list[str] = []  # the open containers' closing brackets
    fresh, expect = False, "value"  # the innermost container has no element yet; value|key|colon|comma|done
    indent = ["\n"]

    def more() -> None:  # read on until the unread text has at least doubled (a long string or number)
        nonlocal buf, pos, final
        rest, have = [buf[pos:]], len(buf) - pos
        wanted = 2 * max(64, have)
        while not final and have < wanted:
            piece = next(pieces, None)
            final = piece is None
            rest.append(piece or "")
            have += len(rest[-1])
        buf, pos = "".join(rest), 0

    while True:
        if not final and len(buf) - pos < 64:
            more()
        match = _JSON_TOKEN.match(buf, pos)
        if match is None or (match.lastindex == 4 and match.end() == len(buf) and not final):
            if not final:
                more()
                continue
            if buf[pos:].strip():
                raise ValueError(f"not JSON at {buf[pos:pos + 20]!r}")
            break
        kind, token = match.lastindex, match.group(match.lastindex)
        pos = match.end()
        if kind == 3:  # a string with escapes
            try:
                value, pos = scanstring(buf, pos)
            except ValueError:
                if final:
                    raise
                pos = match.start()
                more()
                continue
            token = encode_basestring(value)
        elif kind == 4 and not _PLAIN_INT.fullmatch(token):
            token = json.dumps(json.loads(token))
        depth = len(stack)
        if kind == 1 and token in "}]":
            if not stack or token != stack[-1] or not (fresh or expect == "comma"):
                raise ValueError(f"unexpected {token!r} where a {expect} was expected")
            stack.pop()
            text = token if fresh else indent[depth - 1] + token
            fresh, expect = False, "comma" if stack else "done"
        elif kind == 1 and token == ",":
            if expect != "comma":
                raise ValueError(f"unexpected ',' where a {expect} was expected")
            text, expect = "," + indent[depth], "key" if stack[-1] == "}" else "value"
        elif kind == 1 and token == ":":
            if expect != "colon":
                raise ValueError(f"unexpected ':' where a {expect} was expected")
            text, expect = "", "value"
        elif expect == "key" and kind != 1 and token[0] == '"':
            text, expect = (indent[depth] if fresh else "") + token + ": ", "colon"
            fresh = False
        elif expect == "value":
            text = indent[depth] if fresh else ""
            if kind == 1:  # { or [
                stack.append("}" if token == "{" else "]")
                if len(stack) > limits.max_json_depth:
                    raise _deep(limits.max_json_depth)
                if len(indent) <= len(stack):
                    indent.append("\n" + "  " * len(stack))
                fresh, expect = True, "key" if token == "{" else "value"
            else:
                fresh, expect = False, "comma" if stack else "done"
            text += token
        else:
            raise ValueError(f"unexpected {token!r} where a {expect} was expected")
        out.append(text)
        size += len(text)
        if size >= READ >> 4:
            yield "".join(out)
            out, size = [], 0
    if expect != "done":
        raise ValueError("the JSON ends before its value does")
    yield "".join(out)


def _deep(depth: int) -> ExtractError:
    return _limit(f"its JSON nests arrays and objects more than {depth:,} levels deep, the limit per file")


class _HTMLText:
    """lxml parser target: the visible text (no script/style/noscript/template), one stripped line per
    text run between tags (as BeautifulSoup's ``get_text("\\n")``); no tree is built."""

    def __init__(self, max_elements: int):
        self.max_elements, self.elements = max_elements, 0
        self.skipping = 0
        self.run: list[str] = []
        self.lines: list[str] = []

    def _flush(self) -> None:
        if self.run:
            self.lines.extend(s for s in (line.strip() for line in "".join(self.run).splitlines()) if s)
            self.run = []

    def start(self, tag, attrib):
        self.elements += 1
        if self.elements > self.max_elements:
            raise _limit(f"it holds more than {self.max_elements:,} HTML elements, the limit per file")
        self._flush()
        self.skipping += tag in SKIPPED_TAGS

    def end(self, tag):
        self._flush()
        if tag in SKIPPED_TAGS and self.skipping:
            self.skipping -= 1

    def data(self, data):
        if not self.skipping:
            self.run.append(data)

    def close(self):
        self._flush()

    def take(self, first: bool) -> str:
        text, self.lines = "\n".join(self.lines), []
        return text if first or not text else "\n" + text


def _html(source: BinaryIO, limits: ExtractLimits) -> Iterator[str]:
    from lxml import etree

    target = _HTMLText(limits.max_elements)
    parser, first = etree.HTMLParser(target=target, recover=True, huge_tree=True, no_network=True), True
    for text in _decoded(source):
        parser.feed(text)
        piece = target.take(first)
        first = first and not piece
        yield piece
    parser.close()
    yield target.take(first)


def _checked(archive: zipfile.ZipFile, names, limits: ExtractLimits) -> None:
    """Refuse a zip whose parts inflate past ``max_expansion`` times their size (a few KB of empty
    paragraphs can hold millions of them), before any is read."""
    for info in archive.infolist():
        if names is not None and info.filename not in names:
            continue
        if info.file_size > EXPANSION_FLOOR and info.file_size > limits.max_expansion * max(info.compress_size, 1):
            raise _limit(f"its part {info.filename} expands more than {limits.max_expansion}x (from "
                         f"{_size(info.compress_size)} to {_size(info.file_size)}), the limit for compressed documents")


def _size(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MB" if n >= 1 << 20 else f"{max(1, round(n / 1024)):,} KB"


def _xml_limit(exc: Exception) -> ExtractError | None:
    """lxml's own limits (a text node over 10 MB, elements nested over 256 deep), named; else None."""
    message = str(exc)
    if "Text node too long" in message or "huge text node" in message:
        return _limit("it holds a text run longer than 10 MB, the XML parser's limit")
    if "amplification" in message:
        return _limit("its XML expands entities past the XML parser's limit on amplification")
    if "Excessive depth" in message:
        return _limit("its XML nests elements more than 256 deep, the XML parser's limit")
    return None


def _docx(source: BinaryIO, limits: ExtractLimits) -> Iterator[str]:
    """Body paragraphs and table rows (cells joined by `` | ``) in document order, parsed incrementally
    (each one freed once read)."""
    from lxml import etree

    with zipfile.ZipFile(source) as archive:
        _checked(archive, {"word/document.xml"}, limits)
        with archive.open("word/document.xml") as xml:
            try:
                yield from _docx_body(etree.iterparse(xml, events=("end",), tag=(W + "p", W + "tr"),
                                                      resolve_entities=False, no_network=True), limits.max_paragraphs)
            except etree.XMLSyntaxError as exc:
                raise _xml_limit(exc) or exc from None


def _docx_body(events, max_paragraphs: int) -> Iterator[str]:
    for count, (_, element) in enumerate(events):
        if count >= max_paragraphs:
            raise _limit(f"its document holds more than {max_paragraphs:,} paragraphs and table rows, the limit "
                         "per file")
        parent = element.getparent()
        if element.tag == W + "p":
            if parent is not None and parent.tag == W + "tc":
                continue  # a cell's paragraph: read with its row
            yield "".join(element.itertext(W + "t")) + "\n"
        else:
            cells = ["\n".join("".join(p.itertext(W + "t")) for p in cell.iter(W + "p"))
                     for cell in element.iterchildren(W + "tc")]
            yield " | ".join(cells) + "\n"
        if parent is not None and parent.tag != W + "tc":
            element.clear()
            while element.getprevious() is not None:
                del parent[0]


def _pdf(source: BinaryIO, limits: ExtractLimits) -> Iterator[str]:
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import LimitReachedError

    inflate = limits.pdf_stream_mb * 1_000_000
    config = {"zlib_maximum_output_length": inflate, "brotli_maximum_output_length": inflate,
              "lzw_maximum_output_length": inflate, "run_length_maximum_output_length": inflate}
    try:
        with apply_configuration(**config):
            reader = PdfReader(source)
            count = len(reader.pages)
        for number in range(count):
            with apply_configuration(**config):  # not held across a yield: the caller's context is its own
                text = (reader.pages[number].extract_text() or "").strip()
            yield ("\n\n" if number else "") + text
    except LimitReachedError as exc:
        if "decompressing" in str(exc).lower():
            raise _limit(f"a PDF stream inflates past {limits.pdf_stream_mb} MB, the limit per stream") from None
        raise _limit(f"it passes a limit of the PDF reader ({str(exc)[:80].rstrip('. ')})") from None


def _pptx(source: BinaryIO, limits: ExtractLimits) -> Iterator[str]:
    from pptx import Presentation

    with zipfile.ZipFile(source) as archive:
        _checked(archive, None, limits)
    source.seek(0)
    deck = Presentation(source)
    for number, slide in enumerate(deck.slides, 1):
        texts = [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame and shape.text_frame.text]
        yield ("\n\n" if number > 1 else "") + f"Slide {number}:\n" + "\n".join(texts)


READERS = {".json": _json, ".html": _html, ".htm": _html, ".pdf": _pdf, ".docx": _docx, ".pptx": _pptx}
