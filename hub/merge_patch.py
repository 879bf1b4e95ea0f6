"""JSON Merge Patch (RFC 7396): how every PATCH route of the API changes a resource.

A patch names only what changes: members it holds replace the resource's, nested objects
merge member by member, arrays replace whole, and `null` removes a member (the field goes
back to its default). The merged document is then checked as a whole, exactly as a new
resource would be.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from hub.errors import FieldProblem, ValidationFailed

MEDIA_TYPE = "application/merge-patch+json"  # RFC 7396, section 4
T = TypeVar("T")
_AT = re.compile(r" - at `\$\.?(?P<field>[^`]*)`$")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396, section 2, MergePatch(Target, Patch)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def apply(current: msgspec.Struct, patch: msgspec.Struct, as_type: type[T]) -> T:
    """`current` with `patch` merged in (members left UNSET in the patch are absent from
    it), converted to `as_type`; a merged document that is not valid names the field."""
    merged = merge_patch(msgspec.to_builtins(current), msgspec.to_builtins(patch))
    try:
        return msgspec.convert(merged, as_type)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _AT.search(message)
        field = match["field"] if match else "body"
        raise ValidationFailed(
            "the patched resource is not valid",
            [FieldProblem(field or "body", _AT.sub("", message))],
        ) from exc
