"""Public modules list exactly their public names, sorted, and every listed name exists."""

from __future__ import annotations

import importlib
import types

import pytest

PUBLIC_MODULES = [
    "chunkwise",
    "chunkwise.types",
    "chunkwise.sse",
    "chunkwise.accumulate",
    "chunkwise.dialects",
    "chunkwise.confidential",
    "chunkwise.signing",
    "chunkwise.edge",
    "chunkwise.gateway",
    "chunkwise.ray",
    "chunkwise.client",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    for item in exported:
        assert hasattr(module, item), f"{name}.{item} is listed but missing"
    public = {
        item
        for item, value in vars(module).items()
        if not item.startswith("_")
        and not isinstance(value, types.ModuleType)
        # Defined here or in one of this package's private modules; names merely imported are not ours.
        and (getattr(value, "__module__", None) == name or getattr(value, "__module__", "").startswith(f"{name}._"))
    }
    assert public <= set(exported), f"{name} has public names missing from __all__: {sorted(public - set(exported))}"
