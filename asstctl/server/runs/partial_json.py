"""The value of one string field of a JSON object that is still arriving, as far as it came.

``string_value('{"code": "print(1)\\nx', "code")`` is ``'print(1)\nx'``: what a model streaming a
tool call's arguments has written of that string so far (escapes decoded; an escape cut in half
waits for its next fragment; a lone surrogate becomes U+FFFD). ``None`` until the field's value has started.
"""

from __future__ import annotations

import json
import re

from asstctl.server.engine.limits import clean_text

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def string_value(prefix: str, key: str) -> str | None:
    try:  # whole already (then ``key`` may come after other keys)
        value = json.loads(prefix)
    except ValueError:
        pass
    else:
        found = value.get(key) if isinstance(value, dict) else None
        return clean_text(found) if isinstance(found, str) else None
    match = re.match(r'\s*\{\s*' + re.escape(json.dumps(key)) + r'\s*:\s*"', prefix)
    return _decode(prefix, match.end()) if match else None


def _decode(prefix: str, i: int) -> str:
    """The string's characters from ``i`` up to its closing quote or the prefix's end."""
    out, n = [], len(prefix)
    while i < n:
        char = prefix[i]
        if char == '"':
            break
        if char != "\\":
            out.append(char)
            i += 1
            continue
        if i + 1 >= n:
            break  # the escape continues in the next fragment
        if prefix[i + 1] != "u":
            out.append(_ESCAPES.get(prefix[i + 1], prefix[i + 1]))
            i += 2
            continue
        unit, i = _unicode(prefix, i)
        if unit is None:
            break
        out.append(unit)
    return "".join(out)


def _unicode(prefix: str, i: int) -> tuple[str | None, int]:
    """A ``\\uXXXX`` escape (a surrogate pair when it is one) at ``i``: (text, next index) or (None, i)."""
    digits = prefix[i + 2:i + 6]
    if len(digits) < 4:
        return None, i
    try:
        unit = int(digits, 16)
    except ValueError:
        return "", i + 6
    if 0xD800 <= unit < 0xDC00:
        low = prefix[i + 6:i + 12]
        if len(low) < 6:
            return None, i
        if low.startswith("\\u"):
            try:
                second = int(low[2:], 16)
            except ValueError:
                second = 0
            if 0xDC00 <= second < 0xE000:
                return chr(0x10000 + ((unit - 0xD800) << 10) + (second - 0xDC00)), i + 12
    return clean_text(chr(unit)), i + 6
