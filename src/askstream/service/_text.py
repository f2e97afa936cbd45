"""Text from outside, made safe: the model's output, the client's JSON, echoes.

- :func:`valid_text`: a lone UTF-16 surrogate (what a gateway that cuts an
  emoji's pair in two sends as ``"\\ud83d"``) becomes U+FFFD, as a UTF-8
  decoder does with a broken sequence; it cannot be encoded, so it would
  break every reader and the database write.
- :func:`loads`: ``json.loads`` that first refuses nesting deeper than
  ``max_depth`` (400), before the parser's recursion can hit Python's limit.
- :data:`Text`: a pydantic ``str`` that refuses NUL (PostgreSQL cannot store
  it) and lone surrogates (422).
- :func:`shown`: an echo of the client's input in an error message, cut short.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Annotated, Any

from pydantic import AfterValidator

from ._errors import ServiceError

__all__ = ["MAX_DEPTH", "Text", "loads", "shown", "valid_text"]

#: The deepest JSON nesting a request body may have: asks are two levels deep.
MAX_DEPTH = 32
#: How much of the client's input an error message echoes.
SHOWN = 100

_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")
# A JSON string (escapes included), so that brackets inside strings do not count.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(set(range(256)) - set(b"[]{}"))
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def valid_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD.

    >>> valid_text("half an emoji: \\ud83d!")
    'half an emoji: \\ufffd!'
    """
    if text.isascii():  # the usual case, and the cheap test
        return text
    return _SURROGATE.sub("\ufffd", text)


def depth(body: bytes) -> int:
    """How deep the arrays and objects of JSON ``body`` nest (0 for a scalar).

    >>> depth(b'{"a": [1, {"b": "[[["}]}')
    3
    """
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKET)
    return max(accumulate(_STEP[byte] for byte in brackets), default=0)


def loads(body: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a request body's JSON: 400 if it is not JSON or nests deeper than ``max_depth``.

    >>> loads(b'{"question": "Hi?"}')
    {'question': 'Hi?'}
    """
    if depth(body) > max_depth:
        raise ServiceError(400, f"the JSON nests deeper than {max_depth} levels")
    try:
        return json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        raise ServiceError(400, "the body is not JSON") from None


def _text(value: str) -> str:
    if _NOT_TEXT.search(value):
        raise ValueError("must not hold NUL characters or lone surrogates")
    return value


#: A ``str`` field that refuses NUL and lone surrogates (422).
Text = Annotated[str, AfterValidator(_text)]


def shown(value: str, limit: int = SHOWN) -> str:
    """``repr(value)``, cut to about ``limit`` characters: the client's input echoed.

    >>> shown("x" * 500, 10)
    "'xxxxxxxxxx'... (500 characters)"
    """
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"
