"""Knowledge in specs: limits and missing files, each one `path:line:col: message` (no network)."""

from __future__ import annotations

import hashlib

import pytest

from asstctl.spec.project import load_project
from asstctl.spec.loader import load_project_specs
from tests.spec.conftest import problems, project, write  # noqa: F401 (fixture)

CSVS = {f"data/f{i:02}.csv": f"{i}\n" for i in range(21)}
DOCS = {"docs/a.md": "alpha\n", "docs/b.md": "beta\n"}
CORPUS = {
    "21 code interpreter files": (
        {"a.yaml": "model: gpt-4o\ntools:\n  - code_interpreter:\n      files: [data/*.csv]\n", **CSVS},
        ["assistants/a.yaml:4:7: code_interpreter gets 21 files; an assistant takes at most 20 "
         "(narrow the globs, or put the files in a zip archive)"],
    ),
    "a missing file and a glob that matches nothing": (
        {"a.yaml": "model: gpt-4o\ntools:\n  - code_interpreter: {files: [data/gone.csv, data/*.tsv]}\n", **DOCS},
        ["assistants/a.yaml:3:32: assistants/data/gone.csv does not exist (paths are relative to the file that names them)",
         "assistants/a.yaml:3:47: `data/*.tsv` matches no file in assistants"],
    ),
    "a directory": (
        {"a.yaml": "model: gpt-4o\ntools:\n  - code_interpreter: {files: [docs]}\n", **DOCS},
        ["assistants/a.yaml:3:32: assistants/docs is a directory; name its files with a glob such as `docs/*.md`"],
    ),
    "a type file_search cannot read": (
        {"a.yaml": "model: gpt-4o\ntools:\n  - file_search: {vector_store: {files: [sheet.xlsx]}}\n", "sheet.xlsx": "x"},
        ["assistants/a.yaml:3:42: assistants/sheet.xlsx: file_search cannot read `.xlsx` files; it reads .c .cpp .cs "
         ".css .doc .docx .go .html .java .js .json .md .pdf .php .pptx .py .rb .sh .tex .ts .txt "
         "(convert the file, or give it to code_interpreter)"],
    ),
    "two vector stores": (
        {"a.yaml": "model: gpt-4o\ntools:\n  - file_search: {vector_store: {files: [docs/a.md]}}\n"
                   "  - type: file_search\n    file_search: {vector_store: {files: [docs/b.md]}}\n", **DOCS},
        ["assistants/a.yaml:5:19: a second vector store; an assistant has at most 1 (an API limit)"],
    ),
    "tool_resources as well": (
        {"a.yaml": "model: gpt-4o\ntools:\n  - code_interpreter: {files: [docs/a.md]}\n"
                   "tool_resources:\n  code_interpreter: {file_ids: [file-1]}\n", **DOCS},
        ["assistants/a.yaml:5:3: `tool_resources.code_interpreter` and the code_interpreter tool's `files` both give "
         "it resources; keep one (asstctl derives tool_resources from the tool)"],
    ),
    "chunk overlap over half": (
        {"a.yaml": "model: gpt-4o\ntools:\n  - file_search:\n      vector_store:\n        files: [docs/a.md]\n"
                   "        chunking_strategy: {type: static, static: {max_chunk_size_tokens: 200, chunk_overlap_tokens: 150}}\n",
         **DOCS},
        ["assistants/a.yaml:6:80: `chunk_overlap_tokens` must be at most half of `max_chunk_size_tokens`"],
    ),
    "an unknown field in an inline store": (
        {"a.yaml": "model: gpt-4o\ntools:\n  - file_search: {vector_store: {files: [docs/a.md], chunks: 3}}\n", **DOCS},
        ["assistants/a.yaml:3:54: unknown field `chunks` (known fields: name, files, chunking_strategy, expires_after, "
         "metadata)"],
    ),
}


@pytest.mark.parametrize("name", CORPUS)
def test_bad_knowledge(project, name):  # noqa: F811
    files, expected = CORPUS[name]
    assert problems(project, files) == expected


def test_a_file_over_512_mb(project):  # noqa: F811
    write(project, {"a.yaml": "model: gpt-4o\ntools:\n  - code_interpreter: {files: [big.csv]}\n"})
    with open(project / "assistants" / "big.csv", "wb") as stream:
        stream.truncate(513 * 2**20)  # sparse: no disk used
    assert problems(project, {}) == [
        "assistants/a.yaml:3:32: assistants/big.csv is 513 MB; the API takes files of at most 512 MB"]


def test_shared_stores_are_checked_and_referenced_by_key(project):  # noqa: F811
    (project / "vector_stores").mkdir()
    (project / "vector_stores" / "handbook.yaml").write_text("name: Handbook\nfiles: [a.md]\n")
    (project / "vector_stores" / "a.md").write_text("alpha\n")
    (project / "vector_stores" / "broken.yaml").write_text("files: [a.md]\nexpires_after: {days: 0}\n")
    (project / "vector_stores" / "empty.yaml").write_text("name: nothing\n")
    found = problems(project, {"a.yaml": "model: gpt-4o\ntools:\n  - file_search: {vector_store: handbok}\n"})
    assert found == [
        "vector_stores/broken.yaml:2:17: `expires_after.days` must be between 1 and 365 (got 0)",
        "vector_stores/empty.yaml:1:1: `files` is required: the files of the store, e.g. `files: [docs/*.md]`",
        "assistants/a.yaml:2:1: `vector_store: handbok` names no shared vector store (did you mean `handbook`?)",
    ]


def test_stores_resolve_with_hashes_labels_and_settings(project):  # noqa: F811
    (project / "vector_stores" / "docs").mkdir(parents=True)
    (project / "vector_stores" / "docs" / "a.md").write_text("alpha\n")
    (project / "vector_stores" / "handbook.yaml").write_text(
        "files: [docs/*.md]\nmetadata: {team: x}\nexpires_after: {days: 7}\nchunking_strategy: auto\n")
    write(project, {"a.yaml": "model: gpt-4o\ntools:\n  - file_search: {vector_store: handbook, max_num_results: 3}\n",
                    "b.yaml": "model: gpt-4o\ntools:\n  - code_interpreter: {files: [x.csv, '*.csv']}\n", "x.csv": "1\n"})
    specs, stores = load_project_specs(load_project())
    a, b = specs
    assert a.fields["tools"] == [{"type": "file_search", "file_search": {"max_num_results": 3}}]
    assert a.vector_store == "handbook" and a.inline_store is None
    assert [f.label for f in b.code_files] == ["assistants/x.csv"]  # named twice, taken once
    [store] = stores
    assert store.fields == {"name": "handbook", "metadata": {"team": "x"},
                            "expires_after": {"anchor": "last_active_at", "days": 7}}
    assert store.chunking_strategy is None
    assert [(f.label, f.size) for f in store.files] == [("vector_stores/docs/a.md", 6)]
    assert store.files[0].sha256 == hashlib.sha256(b"alpha\n").hexdigest()
