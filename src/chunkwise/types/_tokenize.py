"""``POST /tokenize`` and ``POST /detokenize``, as llama-server and vLLM serve them."""

from __future__ import annotations

import msgspec

from ._fields import always, always_empty_list
from ._request import Message

__all__ = ["DetokenizeRequest", "DetokenizeResponse", "TokenizeRequest", "TokenizeResponse"]


class TokenizeRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Text (``content``, llama-server's name, or ``prompt``, vLLM's) or chat ``messages`` to count.

    ``messages`` go through the model's chat template, ending with the assistant's turn opened when
    ``add_generation_prompt`` (the default). ``add_special`` adds the model's start token to text (by
    default for text, not for messages, whose template writes its own).
    """

    model: str | None = None
    content: str | None = None
    prompt: str | None = None
    messages: list[Message] | None = None
    add_generation_prompt: bool | None = None
    add_special: bool | None = None


class TokenizeResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    tokens: list[int] = always_empty_list()
    count: int = always(0)
    #: The longest prompt plus output one sequence holds (vLLM's name).
    max_model_len: int = always(0)


class DetokenizeRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    tokens: list[int]
    model: str | None = None


class DetokenizeResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    #: The text (llama-server's name); ``prompt`` carries the same text under vLLM's name.
    content: str = always("")
    prompt: str = always("")
