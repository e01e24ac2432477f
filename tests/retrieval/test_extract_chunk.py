"""Extraction of every supported file type (fixtures made here) and token chunking."""

from __future__ import annotations

import io
import zipfile

import pytest

from asstctl.server.retrieval.chunking import chunk_text, count_tokens, sizes, tokenizer_name
from asstctl.server.retrieval.extract import ExtractError, ExtractLimits, extract_text
from tests.retrieval import fixtures


@pytest.mark.parametrize("name, data, expected", [
    ("a.pdf", fixtures.pdf_bytes("Refunds take 5 business days (PDF)."), "Refunds take 5 business days (PDF)."),
    ("a.docx", fixtures.docx_bytes(["The docx paragraph about parcels."], [["zone", "EU"]]), "The docx paragraph about parcels."),
    ("a.pptx", fixtures.pptx_bytes([("Quarterly plan", "Ship the retrieval index")]), "Ship the retrieval index"),
    ("a.html", fixtures.html_bytes("Visible &amp; kept"), "Visible & kept"),
    ("a.json", fixtures.json_bytes({"policy": {"returns_days": 30}}), '"returns_days": 30'),
    ("a.md", b"# Heading\n\nMarkdown body", "Markdown body"),
    ("a.txt", "caf\u00e9 text".encode(), "caf\u00e9 text"),
    ("main.py", b"def refund():\n    return 5\n", "def refund()"),
    ("app.ts", b"export const days: number = 30;", "export const days"),
    ("run.sh", b"#!/bin/sh\necho shipped", "echo shipped"),
])
def test_each_type_is_extracted(name, data, expected):
    assert expected in extract_text(name, data)


def test_html_drops_scripts_and_styles_and_docx_keeps_tables():
    assert "scriptword" not in extract_text("p.html", fixtures.html_bytes("body"))
    assert "color" not in extract_text("p.html", fixtures.html_bytes("body"))
    assert "zone | EU" in extract_text("d.docx", fixtures.docx_bytes(["x"], [["zone", "EU"]]))


@pytest.mark.parametrize("name, data, code", [
    ("image.png", b"\x89PNG\r\n\x1a\n....", "unsupported_file"),
    ("archive", b"no extension", "unsupported_file"),
    ("broken.pdf", b"%PDF-1.4 this is not a pdf", "invalid_file"),
    ("broken.docx", b"PK not a zip", "invalid_file"),
    ("broken.json", b"{not json", "invalid_file"),
    ("binary.txt", b"abc\x00\x01\x02", "invalid_file"),
    ("latin1.md", "caf\u00e9".encode("latin-1"), "invalid_file"),
    ("empty.txt", b"   \n", "invalid_file"),
])
def test_unreadable_files_raise_with_the_api_code(name, data, code):
    with pytest.raises(ExtractError) as caught:
        extract_text(name, data)
    assert caught.value.code == code and caught.value.message


def test_the_offline_cl100k_tokenizer_is_used():
    assert tokenizer_name() == "cl100k_base"
    assert count_tokens("hello world") == 2  # cl100k: "hello", " world"


def test_static_chunks_have_the_size_and_overlap_asked():
    text = " ".join(f"word{i}" for i in range(1000))
    total = count_tokens(text)
    chunks = chunk_text(text, 100, 20)
    assert all(tokens <= 100 for _, tokens in chunks)
    assert [tokens for _, tokens in chunks[:-1]] == [100] * (len(chunks) - 1)
    # windows start every 80 tokens and the last one reaches the end
    assert len(chunks) == -(-(total - 100) // 80) + 1
    first, second = chunks[0][0], chunks[1][0]
    overlap = first[-40:]
    assert overlap.strip().split()[-1] in second  # the tail of one chunk opens the next


def test_auto_is_800_over_400_and_short_text_is_one_chunk():
    assert sizes({"type": "auto"}) == (800, 400) and sizes(None) == (800, 400)
    assert sizes({"type": "static", "static": {"max_chunk_size_tokens": 300, "chunk_overlap_tokens": 0}}) == (300, 0)
    assert chunk_text("short text", 800, 400) == [("short text", 2)]
    assert chunk_text("", 800, 400) == []


def test_html_that_looks_like_a_url_is_still_text():
    assert extract_text("link.html", b"https://example.com/index.html") == "https://example.com/index.html"


class _Trickle:
    """A file object answering at most ``n`` bytes a read: every token boundary becomes a seam."""

    def __init__(self, data: bytes, n: int):
        import io

        self.data, self.n = io.BytesIO(data), n

    def read(self, size: int = -1) -> bytes:
        return self.data.read(self.n if size < 0 else min(size, self.n))


def test_json_is_streamed_as_json_dumps_prints_it_and_broken_json_is_rejected():
    """Past 64 KB (parsed whole below) JSON is walked token by token, read here a few bytes at a time so
    that every token meets a seam: the text is json.dumps(indent=2)'s, and broken JSON is invalid_file."""
    import json

    from asstctl.server.retrieval.extract import WHOLE_JSON, extract_pieces

    docs = [{}, [], {"a": [], "b": {}}, [[[]]], "plain", 12, -0.0, 1e300, [1, 2.5, -3e5, 1E2, True, False, None],
            {"k": {"n": [1, {"z": "\u00e9\U0001F600 \"quoted\" back\\slash\n"}], "e": {}}},
            {f"key{i}": [i, str(i) * (i % 40), {"n": i * 1.5}] for i in range(300)}, "long " * (WHOLE_JSON // 4)]
    for raw in (json.dumps(docs), json.dumps(docs, indent="\t", ensure_ascii=False)):
        assert len(raw) > WHOLE_JSON
        expected = json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
        for n in (7, 4096, 1 << 20):
            assert "".join(extract_pieces("d.json", _Trickle(raw.encode(), n))) == expected, n
    for bad in ['{"a" 1}', "[1,]", '{"a":1', "[1 2]", "{}x", '{"a":tru}', "[1]]", "{1:2}", '"abc', "[}"]:
        for padded in (bad, " " * WHOLE_JSON + bad):
            with pytest.raises(ExtractError) as failed:
                "".join(extract_pieces("bad.json", _Trickle(padded.encode(), 1000)))
            assert failed.value.code == "invalid_file", bad


def test_a_large_json_file_is_read_within_a_small_memory_limit():
    """40,000 keys (0.8 MB): parsing the whole document needs more than the 6 MB this child may allocate
    past its start (a MemoryError); the streamed walk reads it all within them."""
    import json
    import subprocess
    import sys

    child = ("import io, resource, sys\n"
             "from asstctl.server.retrieval.extract import extract_pieces\n"
             "data = sys.stdin.buffer.read()\n"
             "used = next(int(l.split()[1]) << 10 for l in open('/proc/self/status') if l.startswith('VmData:'))\n"
             "resource.setrlimit(resource.RLIMIT_DATA, (used + (6 << 20),) * 2)\n"
             "print(sum(len(p) for p in extract_pieces('keys.json', io.BytesIO(data))))\n")
    data = json.dumps({f"key{i}": i for i in range(40_000)}).encode()
    done = subprocess.run([sys.executable, "-c", child], input=data, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-500:]
    assert int(done.stdout) == len(json.dumps(json.loads(data), indent=2))


def _refused(name: str, data: bytes, limits: ExtractLimits = ExtractLimits()) -> str:
    with pytest.raises(ExtractError) as failed:
        extract_text(name, data, limits)
    assert failed.value.code == "invalid_file" and name in failed.value.message
    return failed.value.message


def test_hostile_documents_fail_fast_naming_the_limit():
    """A tester's files (issue: 14 KB of empty DOCX paragraphs took 28.7 s of a worker; a 1 GB text run and
    5 M nested JSON brackets ran into the worker's memory cap; a PDF stream bomb quoted pypdf), made small
    here with the limits scaled down where a real one would cost a large file."""
    message = _refused("empty.docx", fixtures.docx_xml("<w:p/>" * 200_000))  # 3 KB zipped, 1.2 MB inflated
    assert "its part word/document.xml expands more than 100x" in message
    deck = io.BytesIO(fixtures.pptx_bytes([("Plan", "Ship it")]))
    with zipfile.ZipFile(deck, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ppt/slides/padding.xml", "<a/>" * 300_000)
    assert "its part ppt/slides/padding.xml expands more than 100x" in _refused("deck.pptx", deck.getvalue())
    few = ExtractLimits(max_elements=1_000, max_paragraphs=1_000)
    assert "more than 1,000 paragraphs and table rows" in _refused("many.docx", fixtures.docx_xml("<w:p><w:t>a</w:t></w:p>" * 1_001), few)
    assert "more than 1,000 HTML elements" in _refused("many.html", b"<p>a</p>" * 1_100, few)
    assert extract_text("fine.docx", fixtures.docx_xml("<w:p><w:t>a</w:t></w:p>" * 1_000), few).count("a") == 1_000
    # one text run over libxml2's 10 MB (the ratio check off: a real one would be incompressible)
    run = fixtures.docx_xml("<w:p><w:r><w:t>" + "word " * (2_100_000) + "</w:t></w:r></w:p>")
    message = _refused("run.docx", run, ExtractLimits(max_expansion=10**6))
    assert "a text run longer than 10 MB, the XML parser's limit" in message and "line 0" not in message
    # JSON nesting: 1,000 levels are read (small files parsed whole, large ones walked), 1,001 are not
    for pad in (b"", b" " * (70 << 10)):
        assert extract_text("ok.json", pad + b"[" * 1_000 + b"]" * 1_000).count("[") == 1_000
        assert "more than 1,000 levels deep" in _refused("deep.json", pad + b"[" * 1_001 + b"]" * 1_001)
    message = _refused("bomb.pdf", fixtures.pdf_bytes("inflated text", repeat=60_000), ExtractLimits(pdf_stream_mb=1))
    assert "a PDF stream inflates past 1 MB, the limit per stream" in message and "bytes remaining" not in message
