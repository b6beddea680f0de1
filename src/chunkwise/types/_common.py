"""Pieces shared by chunks and complete responses: the completion's own fields, usage and log-probabilities."""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from ._fields import always, always_empty_list

__all__ = [
    "ChoiceLogprobs",
    "CompletionTokensDetails",
    "CompletionUsage",
    "PromptTokensDetails",
    "StopReason",
    "TokenLogprob",
    "TopLogprob",
]


class ReasoningText:
    """``reasoning_text`` for a message or delta that carries reasoning under either of its two spellings.

    A mixin without fields, so that each struct keeps its own field order on the wire.
    """

    __slots__ = ()
    reasoning_content: str | None
    reasoning: str | None

    @property
    def reasoning_text(self) -> str | None:
        """The reasoning under whichever spelling the server used."""
        return self.reasoning_content if self.reasoning_content is not None else self.reasoning


#: vLLM reports the token id (``128009``) or the matched stop text (``"</s>"``) as a bare value.
StopReason = int | str


class PromptTokensDetails(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """Breakdown of prompt tokens. vLLM sends only ``cached_tokens``; OpenAI adds ``audio_tokens``."""

    cached_tokens: int | None = None
    audio_tokens: int | None = None


class CompletionTokensDetails(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    reasoning_tokens: int | None = None
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class CompletionUsage(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """Token counts. A count a server leaves out decodes as 0 and is always written back."""

    prompt_tokens: int = always(0)
    completion_tokens: int = always(0)
    total_tokens: int = always(0)
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


class TopLogprob(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    token: str = always("")
    #: ``None`` where a server wrote ``-inf`` as JSON ``null`` (JSON has no infinity).
    logprob: float | None = always(0.0)
    bytes: list[int] | None = None


class TokenLogprob(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One sampled token. Atoma's schema sends only ``top_logprobs`` here, so the rest has defaults."""

    token: str = always("")
    logprob: float | None = always(0.0)
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = always_empty_list()


class ChoiceLogprobs(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None


ChoiceT = TypeVar("ChoiceT")


class CompletionFields(msgspec.Struct, Generic[ChoiceT], kw_only=True, omit_defaults=True, gc=False):
    """The fields of every completion object, chat or legacy, streamed or whole, in their wire order.

    Each object names itself in ``object`` and holds its own kind of choice. A subclass must be declared
    ``kw_only=True`` too: msgspec then keeps these fields first, and ``object`` where it stands when the
    subclass gives it its default.
    """

    id: str = always("")
    object: str
    created: int = always(0)
    model: str = always("")
    choices: list[ChoiceT] = always_empty_list()
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None


class ChatCompletionFields(CompletionFields[ChoiceT], kw_only=True):
    """What a chat completion and its chunks add; Atoma nodes sign them and append the last two keys
    (ATOMA_WIRE.md section 5.6)."""

    service_tier: str | None = None
    signature: str | None = None
    response_hash: str | None = None
