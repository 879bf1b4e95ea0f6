"""What the operator's commands (the CLI and the demo) share: who they act as, and how
they write the secrets they hand out."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hub.auth.models import Role
from hub.auth.principal import Principal


def system_principal(username: str = "cli") -> Principal:
    """An admin acting for the operator at the machine (not a person with a login)."""
    return Principal(user_id=0, username=username, role=Role.ADMIN, ward_ids=None, via="token")


def write_private(path: Path, data: dict[str, str]) -> None:
    """Secrets as JSON, readable by the operator only (mode 0600 from the first byte)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
