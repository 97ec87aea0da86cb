"""Request bodies read as JSON the way a strict JSON parser reads them: no NaN, bounded nesting.

Python's ``json`` takes ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON (RFC 8259): a
create with ``"Name": NaN`` made a permission set named "nan". Nesting 100,000 deep raised RecursionError
(a 500 UNKNOWN_EXCEPTION), and a body 900 deep got past the parser to crash a recursive reader. Both are
refused here as ``JSON_PARSER_ERROR``, the code Salesforce's REST API answers a body it cannot read with
[O]; the depth limit and the texts are this org's [U].
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 50  # objects and arrays inside each other; a record or a Composite request needs 5


class BadJson(ValueError):
    """A body that is no JSON this org reads; the message is the error's text."""


def _no_constant(name: str) -> Any:
    raise BadJson(f"The request body is not valid JSON: {name} is not a JSON number")


def read_json(data: bytes) -> Any:
    """The body's JSON value (None for an empty body); raises BadJson."""
    try:
        value = json.loads(data or b"null", parse_constant=_no_constant)
    except BadJson:
        raise
    except RecursionError:
        raise BadJson(f"The request body is not valid JSON: nested deeper than {MAX_DEPTH}") from None
    except ValueError as exc:
        raise BadJson(f"The request body is not valid JSON: {exc}") from None
    if _depth(value) > MAX_DEPTH:
        raise BadJson(f"The request body is not valid JSON: nested deeper than {MAX_DEPTH}")
    return value


def _depth(value: Any) -> int:
    """How deep objects and arrays nest in ``value`` (0 for a scalar), without recursion."""
    deepest, level = 0, [(value, 0)]
    while level:
        item, depth = level.pop()
        if isinstance(item, dict | list) and depth <= MAX_DEPTH:
            deepest = max(deepest, depth + 1)
            level.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
