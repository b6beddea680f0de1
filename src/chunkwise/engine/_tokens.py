"""``/tokenize`` and ``/detokenize`` with the served model's vocabulary, sans I/O.

Messages are tokenized exactly as a chat request's prompt is (the same template, the same handling of
control tokens in message content), so a client can count a request's prompt before it sends it.
"""

from __future__ import annotations

from ..types import DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse
from ._prompt import template_messages
from ._protocol import InvalidRequestError
from ._requests import PromptModel, chat_prompt

__all__ = ["detokenize_request", "tokenize_request"]


def tokenize_request(model: PromptModel, request: TokenizeRequest) -> TokenizeResponse:
    """The tokens of ``content``, ``prompt`` or ``messages`` (exactly one of them)."""
    given = [name for name in ("content", "prompt", "messages") if getattr(request, name) is not None]
    if len(given) != 1:
        raise InvalidRequestError(
            "Give exactly one of `content`, `prompt` (text) or `messages` (a chat, through the model's template); "
            + (f"this request has {', '.join(f'`{name}`' for name in given)}." if given else "this request has none."),
            param=given[-1] if given else "content",
        )
    if request.messages is not None:
        if request.add_special is not None:
            raise InvalidRequestError(
                "`add_special` applies to text; `messages` get the model's chat template, which writes its own "
                "special tokens.",
                param="add_special",
            )
        opened = request.add_generation_prompt is not False
        tokens, _ = chat_prompt(model, template_messages(request.messages), add_generation_prompt=opened)
    else:
        if request.add_generation_prompt is not None:
            raise InvalidRequestError(
                "`add_generation_prompt` applies to `messages`, not to text.", param="add_generation_prompt"
            )
        text = request.content if request.content is not None else request.prompt or ""
        tokens = model.tokenize(text) if request.add_special is False else model.tokenize_prompt(text)
    return TokenizeResponse(tokens=tokens, count=len(tokens), max_model_len=model.context_length)


def detokenize_request(model: PromptModel, request: DetokenizeRequest) -> DetokenizeResponse:
    """The text of ``tokens`` (control tokens write nothing)."""
    if any(not 0 <= token < model.n_vocab for token in request.tokens):
        raise InvalidRequestError(f"`tokens` holds ids outside 0..{model.n_vocab - 1}.", param="tokens")
    text = model.detokenize(request.tokens)
    return DetokenizeResponse(content=text, prompt=text)
