"""``GET /v1/models``."""

from __future__ import annotations

import msgspec

from ._fields import always, always_empty_list

__all__ = ["Model", "ModelList"]


class Model(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    object: str = always("model")
    created: int = always(0)
    owned_by: str = always("")


class ModelList(msgspec.Struct, kw_only=True, omit_defaults=True):
    object: str = always("list")
    data: list[Model] = always_empty_list()
