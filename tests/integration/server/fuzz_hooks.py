"""Schemathesis checks beyond "no 5xx": ward staff never see another ward's objects."""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis

OTHER_WARDS = {w for w in os.environ.get("IOCHUB_FUZZ_FOREIGN_WARDS", "").split(",") if w}


def wards_in(document: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(document, dict):
        for key, value in document.items():
            if key in ("ward", "ward_code") and isinstance(value, str):
                found.add(value)
            elif key == "wards" and isinstance(value, list):
                found |= {w for w in value if isinstance(w, str)}
            else:
                found |= wards_in(value)
    elif isinstance(document, list):
        for item in document:
            found |= wards_in(item)
    return found


@schemathesis.check
def no_foreign_ward_data(ctx: Any, response: Any, case: Any) -> None:
    if not OTHER_WARDS or response.status_code >= 400:
        return
    try:
        document = json.loads(response.content)
    except ValueError:
        return
    leaked = wards_in(document) & OTHER_WARDS
    if leaked:
        raise AssertionError(f"the response shows objects of wards {sorted(leaked)}")
