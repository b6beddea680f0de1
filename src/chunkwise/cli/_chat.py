"""``chunkwise chat``: talk to a server (or, with ``--local``, the embedded engine) from the terminal.

With a prompt argument or piped standard input it answers once; on a terminal it opens a REPL that keeps
the conversation. Answers stream to standard output as they arrive; timing and usage go to standard error,
so ``chunkwise chat "..." > answer.txt`` captures only the answer.

``--api responses|messages`` asks through ``client.responses`` or ``client.messages`` instead of chat
completions. Every backend yields pieces: the raw item the wire carried (a chunk, or a dialect's event, which
``--json`` prints) and the chat chunks it stands for (the dialects' own translation back to chat), so the
text, timing and usage shown are computed the same way whatever the API.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec
from rich.console import Console
from rich.markup import escape

from .._errors import ChunkwiseError
from ..accumulate import ChatCompletionAccumulator
from ..client import APIConnectionError, APITimeoutError
from ..dialects import MessagesToChat, ResponsesToChat
from ..types import ChatCompletionChunk, ChatCompletionRequest, CompletionUsage, ErrorDetail, StreamOptions, encode

__all__ = ["chat", "models"]

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
#: The Messages API requires ``max_tokens``; this one stands in when ``--max-tokens`` is not given.
MESSAGES_MAX_TOKENS = 4096

E = TypeVar("E", bound=msgspec.Struct)
Message = dict[str, str]
#: What a backend streams: the raw wire item (for ``--json``) and the chat chunks it stands for.
Piece = tuple[msgspec.Struct, list[ChatCompletionChunk]]


class RemoteChat:
    """Streams from a server through :class:`chunkwise.Client`, in chat completions, Responses or Messages."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str | None,
        *,
        api: str = "chat",
        confidential: bool = False,
        verify_key: str | None = None,
    ) -> None:
        from ..client import Client

        self.where = base_url
        self._api = api
        self._client = Client(base_url=base_url, api_key=api_key, verify_key=verify_key)
        self._completions = (
            self._client.confidential.chat.completions if confidential else self._client.chat.completions
        )
        self.model = model or self._first_model()

    def _first_model(self) -> str:
        served = self._client.models.list().data
        if not served:
            raise click.ClickException(f"the server at {self.where} serves no models")
        return served[0].id

    @contextmanager
    def stream(self, messages: list[Message], options: dict[str, Any]) -> Iterator[Iterator[Piece]]:
        if self._api == "responses":
            with self._client.responses.create(
                model=self.model,
                input=messages,
                stream=True,
                temperature=options.get("temperature"),
                max_output_tokens=options.get("max_tokens"),
            ) as events:
                yield _as_chat(events, ResponsesToChat().feed)
        elif self._api == "messages":
            system = [message["content"] for message in messages if message["role"] == "system"]
            with self._client.messages.create(
                model=self.model,
                messages=[message for message in messages if message["role"] != "system"],
                max_tokens=options.get("max_tokens") or MESSAGES_MAX_TOKENS,
                stream=True,
                system="\n".join(system) or None,
                temperature=options.get("temperature"),
            ) as events:
                yield _as_chat(events, MessagesToChat().feed)
        else:
            with self._completions.create(
                model=self.model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                **options,
            ) as stream:
                yield ((chunk, [chunk]) for chunk in stream)

    def close(self) -> None:
        self._client.close()


def _as_chat(events: Iterable[E], to_chat: Callable[[E], list[ChatCompletionChunk | ErrorDetail]]) -> Iterator[Piece]:
    # Error events never get here: the client raises them as StreamError.
    for event in events:
        yield event, [item for item in to_chat(event) if isinstance(item, ChatCompletionChunk)]


async def _next_chunk(chunks: AsyncIterator[ChatCompletionChunk]) -> ChatCompletionChunk | None:
    return await anext(chunks, None)


async def _close(chunks: AsyncIterator[ChatCompletionChunk]) -> None:
    await chunks.aclose()  # type: ignore[attr-defined]


class LocalChat:
    """Runs the embedded llama.cpp engine in this process; no server, no sockets."""

    def __init__(self, model_path: Path | None) -> None:
        from ..engine import LlamaCppEngine

        self.where = "the embedded engine"
        self._engine = LlamaCppEngine(model_path)
        self.model = self._engine.model_id
        # asyncio.Runner turns Ctrl-C into cancelling the awaited step, which stops the decode within a token;
        # a bare run_until_complete would leave the generator running and unclosable.
        self._runner = asyncio.Runner()
        self._count = 0

    @contextmanager
    def stream(self, messages: list[Message], options: dict[str, Any]) -> Iterator[Iterator[Piece]]:
        self._count += 1
        request = msgspec.convert(
            {"model": self.model, "messages": messages, "stream": True, **options}, ChatCompletionRequest
        )
        request.stream_options = StreamOptions(include_usage=True)
        generation = self._engine.prepare_chat(
            request, request_id=f"chatcmpl-local-{self._count}", created=int(time.time())
        )
        chunks = generation.stream()

        def step() -> Iterator[Piece]:
            while (chunk := self._runner.run(_next_chunk(chunks))) is not None:
                yield chunk, [chunk]
            # The engine yields no usage chunk (the server adds it), so make one from its exact counts.
            usage = ChatCompletionChunk(
                id=f"chatcmpl-local-{self._count}",
                model=self.model,
                usage=CompletionUsage(
                    prompt_tokens=generation.prompt_tokens,
                    completion_tokens=generation.completion_tokens,
                    total_tokens=generation.prompt_tokens + generation.completion_tokens,
                ),
            )
            yield usage, [usage]

        try:
            yield step()
        finally:
            # Stops the decode within one token when the answer is interrupted.
            self._runner.run(_close(chunks))

    def close(self) -> None:
        self._runner.close()
        self._engine.close()


Backend = RemoteChat | LocalChat


class Conversation:
    """The history of one chat session, and how one answer is shown."""

    def __init__(self, backend: Backend, options: dict[str, Any], system: str | None, as_json: bool) -> None:
        self.backend = backend
        self.options = options
        self.system = system
        self.as_json = as_json
        self.history: list[Message] = []
        # Model text is printed as it is: no markup, and no `:smile:` codes turned into emoji.
        self.out = Console(highlight=False, markup=False, emoji=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False)

    def messages(self) -> list[Message]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history

    def ask(self, prompt: str) -> None:
        """Stream one answer. Ctrl-C stops it (and, through the closed stream, the generation)."""
        self.history.append({"role": "user", "content": prompt})
        accumulator = ChatCompletionAccumulator()
        started = time.perf_counter()
        first_token: float | None = None
        pieces = 0
        interrupted = False
        try:
            with self.backend.stream(self.messages(), self.options) as stream:
                for raw, chunks in stream:
                    if self.as_json:
                        self.out.file.write(encode(raw).decode() + "\n")
                        self.out.file.flush()
                    for chunk in chunks:
                        accumulator.add(chunk)
                        if self.as_json:
                            continue
                        for choice in chunk.choices:
                            if choice.index == 0 and choice.delta.content:
                                first_token = first_token or time.perf_counter()
                                pieces += 1
                                self.out.print(choice.delta.content, end="")
        except KeyboardInterrupt:
            interrupted = True
        finished = time.perf_counter()
        completion = accumulator.result()
        answer = completion.choices[0].message.content if completion.choices else None
        if not self.as_json:
            self.out.print("")
        self.history.append({"role": "assistant", "content": answer or ""})
        # A stopped answer has no usage chunk; on llama.cpp servers each content piece is one token.
        tokens = completion.usage.completion_tokens if completion.usage is not None else pieces
        self._report(started, first_token, finished, tokens, completion.usage, interrupted)

    def _report(
        self,
        started: float,
        first_token: float | None,
        finished: float,
        tokens: int,
        usage: CompletionUsage | None,
        stopped: bool,
    ) -> None:
        parts = []
        if stopped:
            parts.append("stopped")
        if first_token is not None:
            parts.append(f"first token {1000 * (first_token - started):.0f} ms")
            if finished > first_token and tokens > 1:
                parts.append(f"{(tokens - 1) / (finished - first_token):.1f} tokens/s")
        if usage is not None:
            parts.append(
                f"usage {usage.prompt_tokens} prompt + {usage.completion_tokens} completion = {usage.total_tokens}"
            )
        self.err.print(f"[dim]{' · '.join(parts)}[/dim]")


def repl(conversation: Conversation) -> None:
    backend = conversation.backend
    conversation.err.print(
        f"[bold]chunkwise chat[/bold] with {escape(backend.model)} at {escape(backend.where)}."
        " /system TEXT, /reset, /exit; Ctrl-C stops an answer, Ctrl-D leaves."
    )
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            conversation.err.print("")
            return
        except KeyboardInterrupt:
            conversation.err.print("")
            continue
        line = line.strip()
        if not line:
            continue
        if line in ("/exit", "/quit"):
            return
        if line == "/reset":
            conversation.history.clear()
            conversation.err.print("[dim]conversation cleared[/dim]")
        elif line.startswith("/system"):
            conversation.system = line[len("/system") :].strip() or None
            conversation.history.clear()
            conversation.err.print("[dim]system prompt set, conversation cleared[/dim]")
        elif line.startswith("/"):
            conversation.err.print(f"unknown command {line.split()[0]}; try /system TEXT, /reset or /exit")
        else:
            try:
                conversation.ask(line)
            except ChunkwiseError as exc:
                # A full queue or an overlong history ends this answer, not the session.
                conversation.history.pop()
                conversation.err.print(f"error: {escape(str(exc))}")


@contextmanager
def _friendly_errors(base_url: str, local: bool) -> Iterator[None]:
    """The one place library errors become a one-line message and exit status 1."""
    try:
        yield
    except APITimeoutError as exc:
        raise click.ClickException(f"{base_url} did not answer in time: {exc}") from exc
    except APIConnectionError as exc:
        raise click.ClickException(
            f"no chunkwise server at {base_url}; start one with `scripts/serve` (or `chunkwise serve`), "
            "or use --local to run the model in this process"
        ) from exc
    except ChunkwiseError as exc:
        where = "the embedded engine" if local else base_url
        raise click.ClickException(f"{where}: {exc}") from exc


base_url_option = click.option(
    "--base-url",
    envvar="CHUNKWISE_BASE_URL",
    default=DEFAULT_BASE_URL,
    show_default=True,
    help="The OpenAI-compatible API to talk to [env CHUNKWISE_BASE_URL].",
)
api_key_option = click.option("--api-key", envvar="CHUNKWISE_API_KEY", help="Bearer key [env CHUNKWISE_API_KEY].")


@click.command()
@click.argument("prompt", required=False)
@base_url_option
@api_key_option
@click.option("--model", help="Model id (default: the first one the server lists).")
@click.option(
    "--api",
    type=click.Choice(["chat", "responses", "messages"]),
    default="chat",
    show_default=True,
    help="Ask through chat completions, the Responses API or Anthropic's Messages API.",
)
@click.option("--temperature", type=click.FloatRange(0.0, 2.0), help="Sampling temperature (0 is greedy).")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Stop after this many tokens.")
@click.option("--system", help="A system prompt for the conversation.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Write the raw chunks (or, with --api, events) as JSON lines instead of text.",
)
@click.option("--local", is_flag=True, help="Run the embedded engine in this process instead of calling a server.")
@click.option(
    "--model-path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --local: a GGUF file (default: the bundled SmolLM2-135M-Instruct).",
)
@click.option(
    "--confidential", is_flag=True, help="End-to-end encrypted (Atoma confidential compute; chunkwise serve or Atoma)."
)
@click.option(
    "--verify-key",
    envvar="CHUNKWISE_VERIFY_KEY",
    help="The server's Ed25519 public key (GET /signing-key); every answer must be signed by it "
    "[env CHUNKWISE_VERIFY_KEY].",
)
def chat(
    prompt: str | None,
    base_url: str,
    api_key: str | None,
    model: str | None,
    api: str,
    temperature: float | None,
    max_tokens: int | None,
    system: str | None,
    as_json: bool,
    local: bool,
    model_path: Path | None,
    confidential: bool,
    verify_key: str | None,
) -> None:
    """Chat with a model: answer PROMPT (or piped input) once, or open a REPL on a terminal."""
    if prompt is None and not sys.stdin.isatty():
        prompt = sys.stdin.read().strip()
        if not prompt:
            raise click.UsageError("the piped input is empty")
    if api != "chat" and (local or confidential or verify_key is not None):
        raise click.UsageError("--local, --confidential and --verify-key speak chat completions only (--api chat)")
    if verify_key is not None:
        from ..signing import decode_public_key

        try:
            decode_public_key(verify_key)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--verify-key") from None
    options: dict[str, Any] = {}
    if temperature is not None:
        options["temperature"] = temperature
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    with _friendly_errors(base_url, local):
        backend: Backend = (
            LocalChat(model_path)
            if local
            else RemoteChat(base_url, api_key, model, api=api, confidential=confidential, verify_key=verify_key)
        )
        try:
            conversation = Conversation(backend, options, system, as_json)
            if prompt is not None:
                conversation.ask(prompt)
            else:
                repl(conversation)
        finally:
            backend.close()


@click.command()
@base_url_option
@api_key_option
@click.option("--json", "as_json", is_flag=True, help="Print the raw /models answer.")
def models(base_url: str, api_key: str | None, as_json: bool) -> None:
    """List the models a server offers."""
    from ..client import Client

    with _friendly_errors(base_url, local=False), Client(base_url=base_url, api_key=api_key) as client:
        listing = client.models.list()
    if as_json:
        click.echo(encode(listing).decode())
        return
    for served in listing.data:
        click.echo(f"{served.id}\t{served.owned_by}")
