"""What the three planes share to check a JSON message: field specs, ids, and safe decoding.

Every field a peer or the server sends is checked against a spec before anything reads it, so
a malformed message is a `ProtocolError` value at the edge instead of an exception deep inside.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeGuard

from ..errors import ProtocolError

ID_RE = re.compile(r"[a-z0-9]{1,32}")


# Each message type lists its fields: name -> (python type, required, max length for str).
# Ids (sessions, peers) are a type of their own: short lowercase alphanumerics.
class Id(str):
    pass


Spec = dict[str, tuple[type, bool, int]]
ID = (Id, True, 32)
OPT_ID = (Id, False, 32)


def check_fields(what: str, obj: dict[str, Any], spec: Spec, envelope: set[str]) -> dict[str, Any]:
    """Check `obj`'s fields against `spec`; `envelope` names the fields checked elsewhere."""
    for name, (ftype, required, maxlen) in spec.items():
        if name not in obj:
            if required:
                raise ProtocolError(f"{what}: missing field {name!r}")
            continue
        value = obj[name]
        is_id = ftype is Id
        want = str if is_id else ftype
        # bool is an int subclass; never accept it where another type is wanted.
        if not isinstance(value, want) or (isinstance(value, bool) and want is not bool):
            raise ProtocolError(f"{what}: field {name!r} must be {want.__name__}")
        if isinstance(value, str):  # (so `want` is str)
            if maxlen and len(value) > maxlen:
                raise ProtocolError(f"{what}: field {name!r} too long")
            if is_id and not ID_RE.fullmatch(value):
                raise ProtocolError(f"{what}: field {name!r} is not a valid id")
    unknown = set(obj) - set(spec) - envelope
    if unknown:
        raise ProtocolError(f"{what}: unexpected fields {sorted(unknown)[:4]}")
    return obj


def json_object(raw: str | bytes, what: str) -> dict[str, Any]:
    """Decode a JSON object; deep nesting and bad UTF-8 are protocol errors, not crashes."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"{what} is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return obj


def is_resume_id(value: Any) -> TypeGuard[str]:
    return (
        isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)
    )


def is_int(value: Any) -> TypeGuard[int]:
    return type(value) is int  # bool is an int subclass: refuse it
