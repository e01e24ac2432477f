"""The code of a code_interpreter call as far as the model wrote it: every prefix of the streamed
arguments decodes to a prefix of the code, and the whole arguments to the whole code."""

from __future__ import annotations

import json

import pytest

from asstctl.server.runs.partial_json import string_value

CODES = [
    'print("héllo\\tworld")\nx = "\\\\" + "😀"  # ünïcode, a surrogate pair when escaped',
    "",
    "a\\u1234 / </script> \b\f\r",
]


@pytest.mark.parametrize("ascii_only", [True, False])
@pytest.mark.parametrize("code", CODES)
def test_every_prefix_decodes_to_a_prefix_of_the_code(code, ascii_only):
    arguments = json.dumps({"code": code}, ensure_ascii=ascii_only)
    seen = ""
    for end in range(len(arguments) + 1):
        value = string_value(arguments[:end], "code")
        if value is None:
            assert not seen
            continue
        assert code.startswith(value) and len(value) >= len(seen)  # never a half escape, never shrinking
        seen = value
    assert seen == code


def test_other_keys_first_wait_for_the_whole_object_and_other_shapes_give_none():
    assert string_value('{"note": "x", "code": "pri', "code") is None
    assert string_value('{"note": "x", "code": "print(1)"}', "code") == "print(1)"
    assert string_value('{"cod', "code") is None
    assert string_value('{"code": 12}', "code") is None
    assert string_value('["print(1)"]', "code") is None
    assert string_value('  {\n "code" :  "x', "code") == "x"
