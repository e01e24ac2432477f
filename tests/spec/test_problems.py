"""Bad spec files: each gives exactly the expected `path:line:col: message` lines, all at once."""

from __future__ import annotations

import pytest

from asstctl.errors import SpecError
from asstctl.spec.project import load_project
from asstctl.spec.loader import load_specs
from tests.spec.conftest import problems, write

KNOWN_FIELDS = ("$schema, key, model, name, description, instructions, instructions_file, tools, tool_resources, "
                "temperature, top_p, response_format, reasoning_effort, metadata, prevent_destroy, reasoning, text, "
                "service_tier, multi_agent, compaction, experimental, targets")

CORPUS = {
    "malformed YAML": (
        "model: gpt-4o\ntools: [code_interpreter\n",
        ["a.yaml:3:1: malformed YAML: did not find expected ',' or ']' "
         "(while parsing a flow sequence started at line 2, column 8); a `[` is not closed, or an item inside it needs quotes"],
    ),
    "bad indentation": (
        "model: gpt-4o\n  name: x\n",
        ["a.yaml:2:7: malformed YAML: mapping values are not allowed in this context; a value that contains `: ` "
         "must be quoted (`key: \"a: b\"`), or this line is indented more than the key above it"],
    ),
    "tabs": (
        "model: gpt-4o\ntools:\n\t- code_interpreter\nname: |\n  a\ttab inside text is fine\n",
        ["a.yaml:3:1: tab character in indentation; YAML indents with spaces only"],
    ),
    "binary garbage": (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        ["a.yaml:1:1: this is a binary file, not YAML text"],
    ),
    "not UTF-8": (
        b"model: gpt-4o\nname: caf\xe9\n",
        ["a.yaml:2:10: not UTF-8 text (byte 0xe9); save the file as UTF-8"],
    ),
    "a list": (
        "- model: gpt-4o\n- model: gpt-4o-mini\n",
        ["a.yaml:1:1: a spec must be a mapping of fields (`model: gpt-4o`, ...), not a list; "
         "write one assistant per file"],
    ),
    "a scalar": (
        "gpt-4o\n",
        ["a.yaml:1:1: a spec must be a mapping of fields such as `model: gpt-4o`, not a single value"],
    ),
    "empty file": (
        "",
        ["a.yaml:1:1: the file is empty; a spec needs at least `model:` (e.g. `model: gpt-4o`)"],
    ),
    "only comments": (
        "# yaml-language-server: $schema=../.asstctl/spec.schema.json\n",
        ["a.yaml:1:1: the file is empty; a spec needs at least `model:` (e.g. `model: gpt-4o`)"],
    ),
    "duplicate key in a file": (
        "model: gpt-4o\nname: a\nname: b\n",
        ["a.yaml:3:1: duplicate key `name` (first on line 2); remove one of them"],
    ),
    "missing model": (
        "name: x\n",
        ["a.yaml:1:1: `model` is required: the model the assistant uses, e.g. `model: gpt-4o`"],
    ),
    "unknown fields": (
        "model: gpt-4o\ninstuctions: hi\nfoo: 1\n",
        ["a.yaml:2:1: unknown field `instuctions` (did you mean `instructions`?)",
         f"a.yaml:3:1: unknown field `foo` (known fields: {KNOWN_FIELDS})"],
    ),
    "wrong types": (
        "model: 4\ntemperature: hot\ntop_p: 1.5\ntools: code_interpreter\nprevent_destroy: yes please\n",
        ["a.yaml:1:1: `model` must be a string (got 4)",
         'a.yaml:2:1: `temperature` must be a number (got "hot")',
         "a.yaml:3:1: `top_p` must be between 0 and 1 (got 1.5)",
         'a.yaml:4:1: `tools` must be a list (got "code_interpreter")',
         'a.yaml:5:1: `prevent_destroy` must be true or false (got "yes please")'],
    ),
    "temperature out of range in a target": (
        "model: gpt-4o\ntargets:\n  staging:\n    temperature: 3\n",
        ["a.yaml:4:5: `targets.staging.temperature` must be between 0 and 2 (got 3)"],
    ),
    "unset and invalid variables": (
        "model: gpt-4o\ninstructions: |\n  Hello ${ASSTCTL_TEST_UNSET} and $${LITERAL}\nname: ${bad-name}\n",
        ["a.yaml:2:1: environment variable `ASSTCTL_TEST_UNSET` is not set; set it, "
         "or write `$${ASSTCTL_TEST_UNSET}` for a literal `${ASSTCTL_TEST_UNSET}`",
         "a.yaml:4:1: `${bad-name}` is not a valid variable name (letters, digits and _); "
         "write `$${bad-name}` for a literal `${`"],
    ),
    "missing referenced files": (
        "model: gpt-4o\ninstructions_file: prompts/missing.md\ntools:\n"
        "  - function: {name: f, parameters_file: schemas/missing.json}\n"
        "response_format: {type: json_schema, json_schema: {name: r, schema_file: nope.yaml}}\n",
        ["a.yaml:2:1: `instructions_file` points to assistants/prompts/missing.md, which does not exist "
         "(paths are relative to the spec file)",
         "a.yaml:4:25: `parameters_file` points to assistants/schemas/missing.json, which does not exist "
         "(paths are relative to the spec file)",
         "a.yaml:5:61: `schema_file` points to assistants/nope.yaml, which does not exist "
         "(paths are relative to the spec file)"],
    ),
    "oversize fields": (
        f"model: gpt-4o\nname: {'n' * 257}\ndescription: {'d' * 513}\ninstructions: {'i' * 256_001}\n",
        ["a.yaml:2:1: `name` is 257 characters long; it must be at most 256 on an Assistants API target",
         "a.yaml:3:1: `description` is 513 characters long; it must be at most 512 on an Assistants API target",
         "a.yaml:4:1: `instructions` is 256,001 characters long; it must be at most 256,000 on an Assistants API target"],
    ),
    "too many tools": (
        "model: gpt-4o\ntools:\n" + "  - code_interpreter\n" * 129,
        ["a.yaml:2:1: `tools` has 129 items; it must have at most 128 on an Assistants API target"],
    ),
    "metadata: reserved, wrong type, long key": (
        f"model: gpt-4o\nmetadata:\n  asstctl.key: x\n  team: 7\n  {'k' * 65}: v\n  beta: true\n  owner: null\n",
        ["a.yaml:3:3: `metadata` key `asstctl.key` is reserved: keys starting `asstctl.` belong to asstctl",
         'a.yaml:4:3: `metadata.team` must be a string (got 7): metadata values are text; quote it, e.g. "7"',
         f"a.yaml:5:3: `metadata` key `{'k' * 65}` is too long (65 characters, at most 64)",
         'a.yaml:6:3: `metadata.beta` must be a string (got true): metadata values are text; quote it, e.g. "true"',
         'a.yaml:7:3: `metadata.owner` must be a string (got null): metadata values are text; quote it, e.g. '
         '"null"'],
    ),
    "too many metadata keys": (
        "model: gpt-4o\nmetadata:\n" + "".join(f"  k{i}: v\n" for i in range(13)),
        ["a.yaml:2:1: `metadata` has 13 keys; at most 12 are allowed (the API allows 16 and asstctl adds 4 of its own)"],
    ),
    "bad tools": (
        "model: gpt-4o\ntools:\n  - code_interpeter\n  - function: {name: get weather}\n  - {}\n  - 3\n"
        "  - {type: file_search, file_search: {max_num_results: 99}}\n",
        ['a.yaml:3:5: `tools[0]` must be one of code_interpreter, file_search, web_search, computer_use '
         '(got "code_interpeter") (did you mean `code_interpreter`?)',
         'a.yaml:4:16: `tools[1].function.name` must match ^[a-zA-Z0-9_-]+$ (got "get weather")',
         "a.yaml:5:5: `tools[2]` is empty; a tool is `code_interpreter`, `file_search`, "
         "`{function: {name: ...}}` or `{type: ...}`",
         "a.yaml:6:5: `tools[3]` must be one of code_interpreter, file_search, web_search, computer_use or a mapping "
         "(got 3)",
         "a.yaml:7:39: `tools[4].file_search.max_num_results` must be between 1 and 50 (got 99)"],
    ),
    "inconsistent tools": (
        "model: gpt-4o\ntools:\n  - {type: function, function: {name: a}}\n  - function: {name: a}\n"
        "  - {type: code_interpreter, function: {name: b}}\n  - {type: function}\n",
        ["a.yaml:4:16: a second function named `a`; function names must be unique within an assistant",
         "a.yaml:5:30: a `code_interpreter` tool takes no `function` (its `type` is `code_interpreter`)",
         "a.yaml:6:5: a `function` tool needs `function: {name: ..., parameters: ...}`"],
    ),
    "function name too long": (
        f"model: gpt-4o\ntools:\n  - function: {{name: {'f' * 65}}}\n",
        ["a.yaml:3:16: `tools[0].function.name` is 65 characters long; it must be at most 64"],
    ),
    "response format and reasoning effort": (
        "model: gpt-4o\nresponse_format: {type: json_schema, json_schema: {name: bad name}}\nreasoning_effort: hihg\n",
        ['a.yaml:2:52: `response_format.json_schema.name` must match ^[a-zA-Z0-9_-]+$ (got "bad name")',
         "a.yaml:3:1: `reasoning_effort` must be one of none, minimal, low, medium, high, xhigh, max "
         '(got "hihg") (did you mean `high`?)'],
    ),
    "json_schema without its schema": (
        "model: gpt-4o\nresponse_format: {type: json_schema}\n",
        ["a.yaml:2:1: `type: json_schema` needs `json_schema: {name: ..., schema: ...}`"],
    ),
    "instructions twice": (
        "model: gpt-4o\ninstructions: a\ninstructions_file: b.md\n",
        ["a.yaml:1:1: set either `instructions` or `instructions_file`, not both"],
    ),
    "parameters twice": (
        "model: gpt-4o\ntools:\n  - function: {name: f, parameters: {}, parameters_file: p.json}\n",
        ["a.yaml:3:5: set either `parameters` or `parameters_file`, not both"],
    ),
    "unknown target": (
        "model: gpt-4o\ntargets:\n  stagin: {model: gpt-4o-mini}\n  prod: {key: x}\n",
        ["a.yaml:3:3: unknown target `stagin` (did you mean `staging`?)",
         "a.yaml:4:3: unknown target `prod` (define it under `targets:` in asstctl.yaml)",
         "a.yaml:4:10: unknown field `key` (known fields: model, name, description, instructions, instructions_file, "
         "tools, tool_resources, temperature, top_p, response_format, reasoning_effort, metadata, prevent_destroy, "
         "reasoning, text, service_tier, multi_agent, compaction, experimental)"],
    ),
    "recursive alias": (
        "model: gpt-4o\nmetadata: &m {a: *m}\n",
        ["a.yaml:2:11: recursive alias; YAML anchors must not contain themselves"],
    ),
    "python tags are not constructed": (
        "model: !!python/object/apply:os.system [echo hi]\n",
        ["a.yaml:1:8: unsupported YAML tag `tag:yaml.org,2002:python/object/apply:os.system`; use plain values "
         "(text, numbers, true/false, null, lists and mappings)"],
    ),
    "binary values and custom tags": (
        "model: gpt-4o\nname: !!binary aGVsbG8=\ndescription: !secret x\n",
        ["a.yaml:2:7: unsupported YAML tag `tag:yaml.org,2002:binary`; use plain values "
         "(text, numbers, true/false, null, lists and mappings)",
         "a.yaml:3:14: unsupported YAML tag `!secret`; use plain values "
         "(text, numbers, true/false, null, lists and mappings)"],
    ),
}


@pytest.mark.parametrize("text, expected", CORPUS.values(), ids=list(CORPUS))
def test_bad_spec_gives_exact_problems(project, text, expected):
    assert problems(project, {"a.yaml": text}) == [f"assistants/{line}" for line in expected]


def test_a_bad_file_name_needs_a_key(project):
    assert problems(project, {"Bad Name.yaml": "model: gpt-4o\n"}) == [
        "assistants/Bad Name.yaml:1:1: the file name gives the key `Bad Name`, which must match "
        "^[a-z0-9][a-z0-9_.-]{0,63}$ (lower-case letters, digits, `_`, `.` and `-`); rename the file or set `key:`"
    ]
    assert problems(project, {"Bad Name.yaml": "key: good\nmodel: gpt-4o\n"}) == []


def test_duplicate_keys_across_files_name_both_places(project):
    found = problems(project, {"a.yaml": "model: gpt-4o\n", "b.yaml": "model: gpt-4o\nkey: a\n",
                               "c.yml": "key: a\nmodel: [not, valid]\n"})
    assert found == [
        'assistants/c.yml:2:1: `model` must be a string (got a list)',
        "assistants/b.yaml:2:1: the key `a` is also used by assistants/a.yaml:1:1; "
        "every assistant needs its own key (rename a file or change `key:`)",
        "assistants/c.yml:1:1: the key `a` is also used by assistants/a.yaml:1:1; "
        "every assistant needs its own key (rename a file or change `key:`)",
    ]


def test_every_problem_of_every_file_at_once(project):
    found = problems(project, {"a.yaml": "model: gpt-4o\ntemperature: 3\n", "b.yaml": "- x\n",
                               "c.yaml": "model: gpt-4o\nname: ${ASSTCTL_TEST_UNSET}\n"})
    assert [line.split(":")[0] for line in found] == ["assistants/a.yaml", "assistants/b.yaml", "assistants/c.yaml"]


def test_instructions_file_over_the_limit(project):
    write(project, {"prompts/long.md": "x" * 256_001})
    assert problems(project, {"a.yaml": "model: gpt-4o\ninstructions_file: prompts/long.md\n"}) == [
        "assistants/a.yaml:2:1: `instructions_file` is 256,001 characters long; it must be at most 256,000 on an "
        "Assistants API target"
    ]


def test_problems_in_referenced_files(project):
    write(project, {"schemas/p.json": "{\"type\": \"object\",\n  \"properties\": {\n", "schemas/list.yaml": "- a\n",
                    "prompts/latin1.md": b"caf\xe9"})
    found = problems(project, {"a.yaml": "model: gpt-4o\ninstructions_file: prompts/latin1.md\ntools:\n"
                                         "  - function: {name: f, parameters_file: schemas/p.json}\n"
                                         "  - function: {name: g, parameters_file: schemas/list.yaml}\n"})
    assert found == [
        "assistants/prompts/latin1.md:1:4: not UTF-8 text (byte 0xe9); save the file as UTF-8",
        "assistants/schemas/p.json:3:1: malformed JSON: Expecting property name enclosed in double quotes (JSON "
        "needs double-quoted keys and strings, commas between items and none after the last)",
        "assistants/a.yaml:5:25: assistants/schemas/list.yaml must hold a JSON Schema object (a mapping)",
    ]


def test_a_directory_is_not_a_file(project):
    write(project, {"prompts/x.md": ""})
    assert problems(project, {"a.yaml": "model: gpt-4o\ninstructions_file: prompts\n"}) == [
        "assistants/a.yaml:2:1: `instructions_file` points to assistants/prompts, which is a directory, not a file"
    ]


def test_load_specs_raises_with_every_problem(project):
    write(project, {"a.yaml": "model: gpt-4o\ntemperature: 3\n", "b.yaml": ""})
    with pytest.raises(SpecError) as raised:
        load_specs(load_project())
    assert raised.value.problems == [
        "assistants/a.yaml:2:1: `temperature` must be between 0 and 2 (got 3)",
        "assistants/b.yaml:1:1: the file is empty; a spec needs at least `model:` (e.g. `model: gpt-4o`)",
    ]
    assert str(raised.value).endswith("2 problems found") and "docs/spec-format.md" in raised.value.hint


def test_target_variants_are_checked_too(project):
    found = problems(project, {"a.yaml": "model: gpt-4o\ntargets:\n  staging: {instructions_file: nope.md}\n"})
    assert found == ["assistants/a.yaml:3:13: `instructions_file` points to assistants/nope.md, which does not "
                     "exist (paths are relative to the spec file)"]


def test_a_tab_inside_a_block_scalar_is_text(project):
    write(project, {"a.yaml": "model: gpt-4o\ninstructions: |\n  Code:\n  \tindented with a tab\n"})
    assert load_specs(load_project())[0].fields["instructions"] == "Code:\n\tindented with a tab\n"
