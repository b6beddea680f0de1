"""Field helpers shared by the wire types.

Every wire struct uses ``omit_defaults=True`` so that fields nobody set stay off the wire. A few fields
must *always* be written even though they have a default (``object``, token counts, ``logprob``).
msgspec only omits a default when it compares equal to a plain default or to an empty ``list``/``dict``
factory, so such fields get their default from a named factory function, which msgspec never omits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

__all__ = ["always", "always_empty_list"]


def always(value: str | int | float) -> Any:
    """A default that is filled in on decode and still always encoded."""

    def factory() -> str | int | float:
        return value

    factory.__name__ = f"default_{value!r}"
    return msgspec.field(default_factory=factory)


def _empty_list() -> list[Any]:
    return []


def always_empty_list() -> Any:
    """An empty-list default that is still written on the wire (``"top_logprobs": []``)."""
    factory: Callable[[], list[Any]] = _empty_list
    return msgspec.field(default_factory=factory)
