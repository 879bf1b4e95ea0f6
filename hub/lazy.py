"""A package's public names, loaded on first use (PEP 562).

For slices whose __init__ must stay cheap to import: a child process that needs one
pure module of the slice, or settings read before the slice's heavy drivers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, where: Mapping[str, tuple[str, str | None]]) -> Callable[[str], Any]:
    """A module __getattr__: each name from (module, attribute), or the module itself."""

    def __getattr__(name: str) -> Any:
        try:
            module, attribute = where[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        loaded = importlib.import_module(module)
        return loaded if attribute is None else getattr(loaded, attribute)

    return __getattr__
