"""Wire requests to decode plans: every check that can fail happens here, before the request is queued.

A :class:`DecodePlan` is everything the worker thread needs: prompt tokens, how many sequences and
tokens to make, how to sample them, and a factory for the per-choice writers that shape the output.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol

from ..types import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    NamedToolChoice,
    ResponseFormatJSONObject,
    ResponseFormatJSONSchema,
    Tool,
)
from ._choices import ChatChoiceWriter, ChoiceWriter, ChunkHeader, ChunkT, TextChoiceWriter, ToolMode
from ._grammar import json_object_grammar, json_schema_grammar, tool_call_grammar
from ._prompt import TemplateMessage, prompt_segments, template_messages, tool_instructions
from ._protocol import InvalidRequestError
from ._sampling import SamplingConfig, parse_logit_bias

__all__ = ["DecodePlan", "PromptModel", "chat_prompt", "plan_chat", "plan_completion"]

#: OpenAI's default ``max_tokens`` for the legacy completions API.
LEGACY_DEFAULT_MAX_TOKENS = 16


class PromptModel(Protocol):
    """What planning needs to know about the loaded model."""

    @property
    def model_id(self) -> str: ...

    @property
    def context_length(self) -> int: ...

    @property
    def n_vocab(self) -> int: ...

    @property
    def max_running(self) -> int: ...

    @property
    def document_start_token(self) -> int: ...

    def render_chat(self, messages: list[TemplateMessage], *, add_generation_prompt: bool = True) -> str: ...

    def tokenize_prompt(self, text: str) -> list[int]: ...

    def tokenize(self, text: str, *, parse_special: bool = True) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def piece(self, token: int) -> bytes: ...

    def check_grammar(self, grammar: str, *, param: str) -> None: ...


@dataclass(frozen=True, slots=True)
class DecodePlan(Generic[ChunkT]):
    prompt: Sequence[int]
    n: int
    max_new_tokens: int
    sampling: SamplingConfig
    #: ``None``: no log-probabilities; otherwise how many alternatives to report per token.
    top_logprobs: int | None
    make_writers: Callable[[], list[ChoiceWriter[ChunkT]]]
    grammar: str | None = None
    #: ``tool_choice: auto``: the grammar only decides between text and a call; a choice that turns out to be
    #: text continues without it (see :attr:`ChoiceWriter.grammar_needed`).
    grammar_until_decided: bool = False
    #: Where each message's content starts in ``prompt``: the step loop cuts the prompt's canonical grouping
    #: there too, so everything before a message (a system prompt, a conversation's earlier turns) is a
    #: prefix that later requests can reuse from the cache.
    boundaries: tuple[int, ...] = ()


def plan_chat(
    model: PromptModel, request: ChatCompletionRequest, *, request_id: str, created: int
) -> DecodePlan[ChatCompletionChunk]:
    if request.functions is not None or request.function_call not in (None, "none"):
        raise InvalidRequestError(
            "The legacy `functions` parameter is not supported; describe them as `tools` instead",
            param="functions" if request.functions is not None else "function_call",
        )
    n = _choice_count(model, request.n)
    if request.top_logprobs and not request.logprobs:
        raise InvalidRequestError("`top_logprobs` requires `logprobs: true`", param="top_logprobs")
    top_logprobs = (request.top_logprobs or 0) if request.logprobs else None

    tool_mode, tools, forced = _tool_mode(request)
    grammar: str | None = None
    system_suffix: str | None = None
    if tool_mode != "text":
        if isinstance(request.response_format, ResponseFormatJSONObject | ResponseFormatJSONSchema):
            raise InvalidRequestError(
                "`response_format` cannot be combined with tool calls; use tool_choice 'none' or drop one",
                param="response_format",
            )
        grammar = tool_call_grammar(tools, allow_text=tool_mode == "auto")
        system_suffix = tool_instructions(request.tools or [], forced=forced, required=tool_mode == "call")
        model.check_grammar(grammar, param="tools")
    elif isinstance(request.response_format, ResponseFormatJSONObject):
        grammar = json_object_grammar()
    elif isinstance(request.response_format, ResponseFormatJSONSchema):
        grammar = json_schema_grammar(request.response_format.json_schema.schema)
        model.check_grammar(grammar, param="response_format")

    prompt, boundaries = chat_prompt(model, template_messages(request.messages, system_suffix=system_suffix))
    writer = functools.partial(ChatChoiceWriter, tool_mode=tool_mode, tool_names=[tool.function.name for tool in tools])
    return _plan(
        model,
        request,
        prompt,
        writer,
        n=n,
        requested_tokens=request.output_token_limit,
        prompt_param="messages",
        top_logprobs=top_logprobs,
        request_id=request_id,
        created=created,
        grammar=grammar,
        grammar_until_decided=tool_mode == "auto",
        boundaries=boundaries,
    )


def plan_completion(
    model: PromptModel, request: CompletionRequest, *, request_id: str, created: int
) -> DecodePlan[Completion]:
    n = _choice_count(model, request.n)
    if request.best_of is not None and request.best_of != n:
        raise InvalidRequestError("`best_of` other than `n` is not supported", param="best_of")
    if request.suffix:
        raise InvalidRequestError("`suffix` (fill-in-the-middle) is not supported by this engine", param="suffix")
    if request.echo and request.logprobs is not None:
        raise InvalidRequestError(
            "`echo` with `logprobs` would need prompt log-probabilities, which this engine does not compute",
            param="echo",
        )
    prompt, prompt_text = _completion_prompt(model, request.prompt)
    echo = (prompt_text if prompt_text is not None else model.detokenize(prompt)) if request.echo else None
    limit = request.max_tokens if request.max_tokens is not None else LEGACY_DEFAULT_MAX_TOKENS
    return _plan(
        model,
        request,
        prompt,
        functools.partial(TextChoiceWriter, echo=echo),
        n=n,
        requested_tokens=limit,
        prompt_param="prompt",
        top_logprobs=request.logprobs,
        request_id=request_id,
        created=created,
    )


def _plan(
    model: PromptModel,
    request: ChatCompletionRequest | CompletionRequest,
    prompt: Sequence[int],
    writer: Callable[..., ChoiceWriter[ChunkT]],
    *,
    n: int,
    requested_tokens: int | None,
    prompt_param: str,
    top_logprobs: int | None,
    request_id: str,
    created: int,
    grammar: str | None = None,
    grammar_until_decided: bool = False,
    boundaries: tuple[int, ...] = (),
) -> DecodePlan[ChunkT]:
    """What both kinds of request plan alike: a token budget that fits beside the prompt (else an error
    naming ``prompt_param``), sampling, and ``n`` fresh writers each time the plan runs (``writer`` is a
    writer class with the arguments that only its kind of request has already bound)."""
    max_new_tokens = _token_budget(model, len(prompt), requested_tokens, param=prompt_param)
    header = ChunkHeader(id=request_id, created=created, model=model.model_id)
    stops = request.stop_sequences
    logprobs = top_logprobs is not None

    def make_writers() -> list[ChoiceWriter[ChunkT]]:
        return [
            writer(index=index, header=header, piece=model.piece, stops=stops, logprobs=logprobs) for index in range(n)
        ]

    return DecodePlan(
        prompt=prompt,
        n=n,
        max_new_tokens=max_new_tokens,
        sampling=_sampling(model, request, max_new_tokens),
        top_logprobs=top_logprobs,
        make_writers=make_writers,
        grammar=grammar,
        grammar_until_decided=grammar_until_decided,
        boundaries=boundaries,
    )


def chat_prompt(
    model: PromptModel, messages: list[TemplateMessage], *, add_generation_prompt: bool = True
) -> tuple[list[int], tuple[int, ...]]:
    """Prompt tokens in which only the template's own text can produce control tokens, and where each
    message's content starts among them."""
    tokens: list[int] = []
    content_starts: list[int] = []
    render = functools.partial(model.render_chat, add_generation_prompt=add_generation_prompt)
    for text, is_content in prompt_segments(render, messages):
        if is_content:
            content_starts.append(len(tokens))
        tokens += model.tokenize(text, parse_special=not is_content)
    start = model.tokenize_prompt("")  # [BOS] when the model wants one
    if start and tokens[:1] != start:
        tokens = start + tokens
        content_starts = [position + len(start) for position in content_starts]
    return tokens, tuple(content_starts)


def _choice_count(model: PromptModel, n: int | None) -> int:
    count = 1 if n is None else n
    if count > model.max_running:
        raise InvalidRequestError(
            f"n={count} is more than this engine decodes at once (at most {model.max_running})", param="n"
        )
    return count


def _tool_mode(request: ChatCompletionRequest) -> tuple[ToolMode, list[Tool], str | None]:
    """``(mode, tools the grammar allows, forced tool name)``."""
    tools = request.tools or []
    choice = request.tool_choice
    if not tools:
        if choice is not None and choice != "none":
            raise InvalidRequestError("`tool_choice` needs `tools`", param="tool_choice")
        return "text", [], None
    if choice == "none":
        return "text", [], None
    if isinstance(choice, NamedToolChoice):
        named = [tool for tool in tools if tool.function.name == choice.function.name]
        if not named:
            raise InvalidRequestError(
                f"tool_choice names {choice.function.name!r}, which is not in `tools`", param="tool_choice"
            )
        return "call", named[:1], choice.function.name
    if choice == "required":
        return "call", tools, None
    return "auto", tools, None


def _completion_prompt(model: PromptModel, prompt: str | list[str | int | list[int]]) -> tuple[list[int], str | None]:
    """``(tokens, text)``; the text is None when the prompt came as token ids."""
    single: str | int | list[int] | list[str | int | list[int]] = prompt
    if isinstance(prompt, list) and len(prompt) == 1 and not isinstance(prompt[0], int):
        single = prompt[0]  # a batch of one
    if single == "":
        return [model.document_start_token], ""
    if isinstance(single, str):
        # Text is text: "<|im_end|>" in a prompt is ten characters, not the control token (as in chat messages).
        # A client that means a control token sends its id.
        return _non_empty(model.tokenize_prompt("") + model.tokenize(single, parse_special=False)), single
    if isinstance(single, list) and all(isinstance(item, int) for item in single):
        return _checked_tokens(model, [item for item in single if isinstance(item, int)]), None
    raise InvalidRequestError("Only one prompt per request is supported", param="prompt")


def _checked_tokens(model: PromptModel, tokens: list[int]) -> list[int]:
    if any(not 0 <= token < model.n_vocab for token in tokens):
        raise InvalidRequestError(f"`prompt` holds token ids outside 0..{model.n_vocab - 1}", param="prompt")
    return _non_empty(tokens)


def _non_empty(tokens: list[int]) -> list[int]:
    if not tokens:
        raise InvalidRequestError("`prompt` is empty", param="prompt")
    return tokens


def _token_budget(model: PromptModel, prompt_tokens: int, requested: int | None, *, param: str) -> int:
    """Tokens each sequence may make: what was asked, clamped to what fits beside the prompt.

    Every sequence has a KV stream of its own, holding its copy of the prompt, so each of the ``n`` choices
    has the whole room beside the prompt.
    """
    room = model.context_length - prompt_tokens
    if room < 1:
        raise InvalidRequestError(
            f"This model's maximum context length is {model.context_length} tokens. However, your "
            f"{'messages' if param == 'messages' else 'prompt'} resulted in {prompt_tokens} tokens, "
            f"which leaves no room for a completion. Please reduce the length of the {param}.",
            param=param,
            code="context_length_exceeded",
        )
    return room if requested is None else min(requested, room)


class _SamplingFields(Protocol):
    """The sampling fields that chat and legacy requests share."""

    @property
    def temperature(self) -> float | None: ...

    @property
    def top_p(self) -> float | None: ...

    @property
    def seed(self) -> int | None: ...

    @property
    def presence_penalty(self) -> float | None: ...

    @property
    def frequency_penalty(self) -> float | None: ...

    @property
    def logit_bias(self) -> dict[str, float] | None: ...


def _sampling(model: PromptModel, request: _SamplingFields, max_new_tokens: int) -> SamplingConfig:
    return SamplingConfig(
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        # Only chat requests carry top_k (the dialects translate Anthropic's to it).
        top_k=getattr(request, "top_k", None) or 0,
        seed=request.seed,
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        logit_bias=parse_logit_bias(request.logit_bias, model.n_vocab),
        penalty_window=max_new_tokens,
    )
