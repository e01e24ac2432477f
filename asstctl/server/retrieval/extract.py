"""Text extraction: file bytes + filename -> plain text, with well-kept libraries.

``.pdf`` (pypdf), ``.docx`` (python-docx), ``.pptx`` (python-pptx), ``.html``/``.htm``
(beautifulsoup4 on the stdlib html.parser), ``.json`` (parsed, then re-printed), and UTF-8 text
for ``.txt .md`` and source files. Anything else raises :class:`ExtractError` with code
``unsupported_file``; bytes a parser rejects raise it with code ``invalid_file``.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import PurePosixPath

TEXT_EXTENSIONS = frozenset(
    ".txt .md .markdown .rst .csv .tsv .log .xml .yaml .yml .toml .ini .cfg .tex"
    " .py .js .mjs .cjs .ts .tsx .jsx .go .java .kt .scala .c .h .cc .cpp .cxx .hpp .cs .rb .php"
    " .rs .swift .sh .bash .zsh .ps1 .css .scss .less .sql .r .lua .pl .m .vue .svelte".split()
)


class ExtractError(Exception):
    """The file cannot be turned into text: ``code`` is ``unsupported_file`` or ``invalid_file``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def extension(filename: str) -> str:
    return PurePosixPath(filename or "").suffix.lower()


def extract_text(filename: str, data: bytes) -> str:
    """The text of a file; raises :class:`ExtractError` when it has none we can read."""
    ext = extension(filename)
    reader = READERS.get(ext) or (_text if ext in TEXT_EXTENSIONS else None)
    if reader is None:
        raise ExtractError(
            "unsupported_file",
            f"The file type of {filename!r} is not supported for retrieval; use one of "
            ".txt .md .html .json .pdf .docx .pptx or a source file.",
        )
    try:
        text = reader(data)
    except ExtractError:
        raise
    except Exception as exc:  # a parser's own error: the bytes are not what the name says
        raise ExtractError("invalid_file", f"The file {filename!r} could not be parsed as {ext}: {exc}") from None
    if not text.strip():
        raise ExtractError("invalid_file", f"The file {filename!r} contains no extractable text.")
    return text


def _text(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise ExtractError("invalid_file", "The file looks binary (it contains NUL bytes), not text.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ExtractError("invalid_file", f"The file is not valid UTF-8 text ({exc.reason} at byte {exc.start}).") from None


def _json(data: bytes) -> str:
    value = json.loads(_text(data))
    return json.dumps(value, indent=2, ensure_ascii=False)


def _html(data: bytes) -> str:
    from bs4 import BeautifulSoup

    with warnings.catch_warnings():  # e.g. "looks like a URL": the file is what it is
        warnings.simplefilter("ignore")
        soup = BeautifulSoup(_text(data), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    return "\n".join(line for line in lines if line)


def _pdf(data: bytes) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)


def _docx(data: bytes) -> str:
    import docx

    document = docx.Document(io.BytesIO(data))
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text for cell in row.cells))
    return "\n".join(parts)


def _pptx(data: bytes) -> str:
    from pptx import Presentation

    deck = Presentation(io.BytesIO(data))
    parts = []
    for number, slide in enumerate(deck.slides, 1):
        texts = [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame and shape.text_frame.text]
        parts.append(f"Slide {number}:\n" + "\n".join(texts))
    return "\n\n".join(parts)


READERS = {".json": _json, ".html": _html, ".htm": _html, ".pdf": _pdf, ".docx": _docx, ".pptx": _pptx}
