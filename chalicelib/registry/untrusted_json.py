"""JSON from clients (manifests, page tokens, request bodies), parsed with a nesting limit.

Python's decoder recurses once per nesting level, so 100 KB of ``[`` ends in RecursionError
wherever the interpreter's stack limit happens to fall: a 500 instead of a client error.
The nesting depth is measured first, without recursion, and over-deep documents are refused
as malformed JSON before the decoder sees them.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Far above any real document (an OCI index nests about 5 levels), far below the
# interpreter's recursion limit whatever the stack depth of the caller.
MAX_JSON_DEPTH = 64

# A JSON string, or an unterminated one running to the end of the text (the decoder then
# fails on it without recursing further). Written so that it never backtracks: linear time
# whatever the input.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class JsonTooDeepError(ValueError):
    """Nested deeper than allowed; a ValueError like every other malformed-JSON failure."""


def exceeds_depth(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects in ``text`` nest deeper than ``limit`` levels. Brackets
    inside strings do not count; for malformed text the answer may err towards True."""
    if text.count("[") + text.count("{") <= limit:
        return False  # too few openers to reach the limit: the common case, in C
    depth = 0
    for char in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        if char in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def loads(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for untrusted text: raises ValueError (``JsonTooDeepError`` for
    over-deep nesting, ``UnicodeDecodeError`` for bytes that are not UTF-8)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if exceeds_depth(text, limit):
        raise JsonTooDeepError(f"JSON nested deeper than {limit} levels")
    return json.loads(text)
