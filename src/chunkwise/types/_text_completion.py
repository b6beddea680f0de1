"""The legacy ``POST /v1/completions`` API: a prompt in, text out."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from ._common import CompletionFields, StopReason
from ._fields import always, always_empty_list
from ._request import Bias, Penalty, PositiveInt, Probability, StopText, StreamOptions, Temperature

__all__ = ["Completion", "CompletionChoice", "CompletionLogprobs", "CompletionRequest"]

#: A string, a list of strings, a list of token ids, or a list of token-id lists.
Prompt = str | list[str | int | list[int]]


class CompletionRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    model: str
    prompt: Prompt
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    best_of: Annotated[int, Meta(ge=1, le=128)] | None = None
    stop: StopText | Annotated[list[StopText], Meta(max_length=16)] | None = None
    max_tokens: PositiveInt | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Bias] | None = None
    #: The number of most likely tokens to report per position (0-5).
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None
    echo: bool | None = None
    suffix: str | None = None
    seed: int | None = None
    user: str | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage is True

    @property
    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionLogprobs(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    tokens: list[str] = always_empty_list()
    token_logprobs: list[float | None] = always_empty_list()
    top_logprobs: list[dict[str, float] | None] = always_empty_list()
    text_offset: list[int] = always_empty_list()


class CompletionChoice(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    index: int = always(0)
    text: str = always("")
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None
    stop_reason: StopReason | None = None


class Completion(CompletionFields[CompletionChoice], kw_only=True):
    """A legacy completion; streamed pieces use the same shape with partial ``text``."""

    object: str = always("text_completion")
