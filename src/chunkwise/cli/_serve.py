"""``chunkwise serve``: load a GGUF model once, then serve it with the OpenAI API under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import click
import msgspec
from rich.console import Console
from rich.text import Text

from .._errors import ChunkwiseError
from ._progress import spinner

if TYPE_CHECKING:
    from ..confidential import NodeKey
    from ..server import GatewayMembership
    from ..signing import Signer

__all__ = ["serve"]

_LOG_LEVELS = ["critical", "error", "warning", "info", "debug"]
_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def _client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses; a wildcard bind address is not one it can connect to."""
    host = _WILDCARD_HOSTS.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def curl_example(url: str, model_id: str, *, with_key: bool) -> str:
    """A copy-pasteable curl line that streams a chat completion from the server at ``url``."""
    body = (
        '{"model": ' + _json_string(model_id) + ', "messages": [{"role": "user", "content": "Say hello!"}], '
        '"max_tokens": 64, "stream": true}'
    )
    parts = ["curl", "-N", f"{url}/v1/chat/completions", "-H", shlex.quote("Content-Type: application/json")]
    if with_key:
        parts += ["-H", '"Authorization: Bearer $CHUNKWISE_API_KEY"']
    parts += ["-d", shlex.quote(body)]
    return " ".join(parts)


def _json_string(value: str) -> str:
    return msgspec.json.encode(value).decode()


def _configure_logging(level: str) -> None:
    from uvicorn.logging import DefaultFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s"))
    logger = logging.getLogger("chunkwise")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def _load_engine(console: Console, model_path: Path | None, engine_options: dict[str, Any]) -> Any:
    from ..engine import LlamaCppEngine, default_model_path

    path = model_path or default_model_path()
    with spinner(console, f"Loading {path.name} ..."):
        # None, not the bundled path: the engine serves its bundled model under the Hugging Face id.
        engine = LlamaCppEngine(model_path, **engine_options)
    console.print(
        Text.assemble("Loaded ", (str(path), "bold"), f" (context {engine.context_length} tokens)"), soft_wrap=True
    )
    return engine


def _load_embedder(console: Console, engine: Any, model_path: Path | None, n_threads: int | None) -> Any:
    from ..engine import LlamaEmbedder

    path = model_path or engine.model_path
    model_id = engine.model_id if model_path is None else model_path.name.removesuffix(".gguf")
    with spinner(console, f"Loading embeddings of {path.name} ..."):
        embedder = LlamaEmbedder(path, model_id=model_id, n_ctx=engine.context_length, n_threads=n_threads)
    console.print(Text.assemble("Embeddings from ", (str(path), "bold"), f" as {model_id}"), soft_wrap=True)
    return embedder


_SECONDS = click.FloatRange(min=0, min_open=True)
_ONE_OR_MORE = click.IntRange(min=1)

_Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _option_group(
    group: str, *options: _Decorator, into: Callable[[dict[str, Any]], Any] = lambda values: values
) -> _Decorator:
    """``options`` whose values the command receives as one argument, ``group``: a dict keyed by their parameter
    names (the keywords they are passed on as, so that each option is written once), or what ``into`` makes
    of it."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def grouped(**values: Any) -> Any:
            values[group] = into({name: values.pop(name) for name in names})
            return command(**values)

        # wraps() copied the command's parameter list; the group's options are added after what it holds.
        params: list[click.Parameter] = grouped.__dict__.setdefault("__click_params__", [])
        known = len(params)
        for option in reversed(options):
            option(grouped)
        names = [param.name for param in reversed(params[known:]) if param.name is not None]
        return grouped

    return decorate


class _KeyFile(NamedTuple):
    #: The PEM file; ``None``: a key for this run only (or none, for the signing key).
    path: Path | None
    #: Replace the key in ``path`` with a new one first.
    rotate: bool


def _key_file_options(key: str, *, envvar: str, help: str) -> _Decorator:
    """``--<key>-key-file`` and ``--rotate-<key>-key``, which the command receives as one :class:`_KeyFile`,
    ``<key>_key``."""
    path_flag, rotate_flag = f"--{key}-key-file", f"--rotate-{key}-key"

    def key_file(values: dict[str, Any]) -> _KeyFile:
        found = _KeyFile(values[f"{key}_key_file"], values[f"rotate_{key}_key"])
        if found.rotate and found.path is None:
            raise click.UsageError(f"{rotate_flag} needs {path_flag}")
        return found

    return _option_group(
        f"{key}_key",
        click.option(path_flag, type=click.Path(dir_okay=False, path_type=Path), envvar=envvar, help=help),
        click.option(rotate_flag, is_flag=True, help=f"Replace the key in {path_flag} with a new one before serving."),
        into=key_file,
    )


@click.command(context_settings={"show_default": True})
@click.option("--host", default="127.0.0.1", help="Address to listen on (0.0.0.0 for all).")
@click.option("--port", default=8000, type=click.IntRange(0, 65535), help="Port (0 picks one).")
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A GGUF model file. Default: the bundled SmolLM2-135M-Instruct.",
)
@click.option(
    "--model-id",
    default=None,
    help="The id clients send as `model`. Default: HuggingFaceTB/SmolLM2-135M-Instruct for the bundled model, "
    "else the file name without .gguf.",
)
@click.option(
    "--embedding-model",
    "embedding_model_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A GGUF file for /v1/embeddings, served under its own id (its file name without .gguf). "
    "Default: the served model's own pooled embeddings.",
)
@click.option(
    "--embeddings/--no-embeddings",
    default=True,
    help="Serve /v1/embeddings (in a llama.cpp context of its own; not with --ray).",
)
@click.option(
    "--api-key",
    envvar="CHUNKWISE_API_KEY",
    default=None,
    help="Require `Authorization: Bearer KEY` on /v1/* (env: CHUNKWISE_API_KEY). Default: no authentication.",
)
@click.option(
    "--n-ctx",
    type=click.IntRange(min=16),
    default=None,
    show_default="the model's training context, at most 2048",
    help="Context length of one sequence (prompt plus output) in tokens; each running sequence has its own.",
)
@click.option(
    "--n-threads",
    type=_ONE_OR_MORE,
    default=None,
    show_default="one per core",
    help="CPU threads for generation and prompt evaluation.",
)
@click.option(
    "--max-running",
    type=_ONE_OR_MORE,
    default=8,
    help="Sequences decoded together (a request with n=4 counts 4); more requests wait in the queue.",
)
@click.option(
    "--speculation/--no-speculation",
    default=True,
    help="Let each sequence guess tokens from its prompt and output, verified in the same decode step "
    "(prompt lookup); the output is the same either way.",
)
@click.option(
    "--jump-forward/--no-jump-forward",
    default=False,
    show_default=True,
    help="Guess the text a request's grammar forces next (the keys of a json_schema), verified in the same "
    "decode step as speculation's guesses; the output is the same either way. Off by default: the model often "
    "writes forced text in other tokens than guessed, and it measured no faster.",
)
@click.option(
    "--draft-max",
    type=click.IntRange(min=1, max=48),
    default=8,
    help="With --speculation: the most tokens one sequence guesses per step (it decodes as many as its "
    "measured step costs and kept guesses say pay).",
)
@click.option(
    "--cache-type-k",
    type=click.Choice(["q8_0", "f16"]),
    default="q8_0",
    show_default=True,
    help="The type of the KV cache's keys (values are f16). With q8_0 every batch shape takes one attention "
    "path, so greedy output is the same alone and in company at no cost; with f16 (llama.cpp's default) a "
    "sequence decoded alone over a long context decodes one token more per step to keep that promise.",
)
@_option_group(
    # ServerSettings fields of the same names.
    "server_options",
    click.option(
        "--queue-size",
        type=click.IntRange(min=0),
        default=16,
        help="Requests that may wait for room in the engine; more get 429.",
    ),
    click.option(
        "--keepalive-interval",
        type=_SECONDS,
        default=15.0,
        help="Seconds between SSE keep-alive comments while a stream waits in the queue.",
    ),
    click.option(
        "--write-timeout",
        type=_SECONDS,
        default=30.0,
        help="Seconds a client may read nothing of its response before the response is cancelled.",
    ),
    click.option(
        "--header-timeout",
        type=_SECONDS,
        default=30.0,
        help="Seconds a connection may take to send a request's headers before it is closed.",
    ),
    click.option(
        "--max-connections",
        type=_ONE_OR_MORE,
        default=1000,
        help="Open connections past which the one that has waited longest for a request is closed.",
    ),
    click.option(
        "--max-body-size",
        type=_ONE_OR_MORE,
        default=4 * 1024 * 1024,
        help="Largest request body in bytes; larger ones get 413.",
    ),
    click.option(
        "--cors-origin",
        "cors_origins",
        multiple=True,
        default=["*"],
        help="Origin allowed to call the API from a browser; repeat for several.",
    ),
)
@_key_file_options(
    "node",
    envvar="CHUNKWISE_NODE_KEY_FILE",
    help="PEM file of the X25519 key confidential clients encrypt to; created if missing, kept across restarts. "
    "Default: a new key at every start.",
)
@_key_file_options(
    "signing",
    envvar="CHUNKWISE_SIGNING_KEY_FILE",
    help="PEM file of an Ed25519 key; created if missing. With it every chunk and answer is signed and chained, "
    "and GET /signing-key serves the public key. Default: answers are not signed.",
)
@click.option(
    "--response-store",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite file that keeps stored Responses (previous_response_id, GET /v1/responses/{id}) across "
    "restarts; created if missing. Default: in memory.",
)
@click.option(
    "--response-store-size",
    type=_ONE_OR_MORE,
    default=1000,
    help="Stored Responses kept; the least recently used go first.",
)
@_option_group(
    # GatewayMembership fields of the same names, and the URL the gateway reaches this node at.
    "joining",
    click.option(
        "--join",
        "gateway_url",
        default=None,
        metavar="GATEWAY_URL",
        help="Join the `chunkwise gateway` at this URL: register (signed with --signing-key-file) and heartbeat. "
        "The gateway must trust the signing key (`chunkwise nodes allow`).",
    ),
    click.option(
        "--node-name", "name", default=None, help="With --join: this node's name at the gateway (its upstream name)."
    ),
    click.option(
        "--public-url",
        default=None,
        help="With --join: the URL the gateway reaches this node at. Default: http://HOST:PORT.",
    ),
    click.option(
        "--heartbeat-interval",
        "interval",
        type=_SECONDS,
        default=10.0,
        help="With --join: seconds between registrations; keep it under the gateway's [nodes] heartbeat_timeout.",
    ),
    click.option(
        "--node-small-id",
        type=click.IntRange(min=0),
        default=None,
        help="With --join: the node id /v1/nodes/lock answers. Default: one derived from the signing key.",
    ),
    click.option(
        "--node-country",
        "country",
        default="",
        show_default=False,
        help="With --join: the `country` of the registration (Atoma's field).",
    ),
)
@click.option("--log-level", type=click.Choice(_LOG_LEVELS), default="info", help="Server log verbosity.")
@click.option("--access-log/--no-access-log", default=True, help="Log every request.")
@_option_group(
    # start_deployment's keywords.
    "ray",
    click.option(
        "--ray",
        "address",
        default=None,
        metavar="ADDRESS",
        help="Run the model as Ray Serve replicas: `local` (a private cluster, stopped on exit), `auto` (the "
        "cluster `ray start` made here) or a GCS HOST:PORT (not ray://: Ray Serve does not stream through Ray "
        "Client). Needs chunkwise[ray].",
    ),
    click.option("--replicas", type=_ONE_OR_MORE, default=1, help="With --ray: replicas."),
    click.option("--min-replicas", type=_ONE_OR_MORE, default=None, help="With --ray: autoscale from this many."),
    click.option("--max-replicas", type=_ONE_OR_MORE, default=None, help="With --ray: autoscale up to this many."),
    click.option("--replica-cpus", type=_SECONDS, default=1.0, help="With --ray: logical CPUs each replica reserves."),
    click.option(
        "--max-ongoing-requests",
        type=_ONE_OR_MORE,
        default=8,
        help="With --ray: requests one replica takes at once; more wait in the server's queue (--queue-size).",
    ),
    click.option("--ray-app", "app_name", default="chunkwise", help="With --ray: the Ray Serve application name."),
    click.option(
        "--autoscaling-option",
        "autoscaling_options",
        multiple=True,
        metavar="KEY=VALUE",
        help="With --ray: a Ray Serve AutoscalingConfig field, e.g. upscale_delay_s=5; repeat for several.",
    ),
    click.option(
        "--prefix-affinity/--no-prefix-affinity",
        default=True,
        help="With --ray: send requests that share a prompt prefix to the same replica when load allows.",
    ),
)
def serve(
    host: str,
    port: int,
    model_path: Path | None,
    model_id: str | None,
    embedding_model_path: Path | None,
    embeddings: bool,
    api_key: str | None,
    n_ctx: int | None,
    n_threads: int | None,
    max_running: int,
    speculation: bool,
    jump_forward: bool,
    draft_max: int,
    cache_type_k: str,
    server_options: dict[str, Any],
    node_key: _KeyFile,
    signing_key: _KeyFile,
    response_store: Path | None,
    response_store_size: int,
    joining: dict[str, Any],
    log_level: str,
    access_log: bool,
    ray: dict[str, Any],
) -> None:
    """Serve a GGUF model with the OpenAI chat-completions API, the Responses API and Anthropic Messages.

    With --ray the same API is served from this process while the model runs in Ray Serve replicas.
    """
    import uvicorn

    from ..server import ServerSettings, create_app, h11_protocol

    console = Console()
    _configure_logging(log_level)
    engine_options: dict[str, Any] = {
        "model_id": model_id,
        "n_threads": n_threads,
        "max_sequences": max_running,
        "speculation": speculation,
        "jump_forward": jump_forward,
        "draft_max": draft_max,
        "cache_type_k": cache_type_k,
    }
    if n_ctx is not None:
        engine_options["n_ctx"] = n_ctx
    if embedding_model_path is not None and (ray["address"] is not None or not embeddings):
        raise click.UsageError("--embedding-model is served only without --ray and without --no-embeddings")
    engine: Any = None
    embedder: Any = None
    deployment: Any = None
    public_url = joining.pop("public_url")
    _check_join_options(joining["gateway_url"], joining["name"], signing_key.path, api_key)
    try:
        node_key_pair, signer = _load_keys(console, *node_key, *signing_key)
        membership = None
        if joining["gateway_url"] is not None:
            from ..registration import default_node_small_id
            from ..server import GatewayMembership

            assert signer is not None
            if joining["node_small_id"] is None:
                joining["node_small_id"] = default_node_small_id(signer.public_key)
            membership = GatewayMembership(signer=signer, **joining)
        settings = ServerSettings(
            **server_options,
            api_key=api_key or None,
            max_running=max_running,
            node_key=node_key_pair,
            signer=signer,
            node_small_id=joining["node_small_id"] or 0,
            response_store=str(response_store) if response_store is not None else None,
            response_store_size=response_store_size,
        )
        if ray["address"] is not None:
            from ._ray import start_deployment

            deployment = start_deployment(console, model_path, engine_options, **ray)
            engine = deployment.engine
        else:
            engine = _load_engine(console, model_path, engine_options)
            if embeddings:
                embedder = _load_embedder(console, engine, embedding_model_path, n_threads)
    except (ChunkwiseError, ValueError, OSError) as exc:
        if deployment is None and engine is not None:
            engine.close()
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc

    try:
        app = deployment.create_app(settings) if deployment else create_app(engine, settings, embedder=embedder)
        # The app object, not an import string: the model is loaded once, here, and never reloaded.
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=access_log,
            http=h11_protocol(header_timeout=settings.header_timeout, max_connections=settings.max_connections),
            ws="none",
            lifespan="on",
            # Open streams get this long to finish on Ctrl-C before they are cut.
            timeout_graceful_shutdown=3,
        )
        server = uvicorn.Server(config)
        # On Ctrl-C uvicorn shuts down gracefully, then re-raises the signal it caught.
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                _serve_and_announce(
                    server,
                    console,
                    engine.model_id,
                    with_key=api_key is not None,
                    signed=signer is not None,
                    membership=membership,
                    public_url=public_url,
                )
            )
        if not server.started:
            raise click.ClickException(f"could not listen on {host}:{port}")
    finally:
        engine.close()
        if embedder is not None:
            embedder.close()
        if deployment is not None:
            deployment.close()
    console.print("Stopped.")


def _load_keys(
    console: Console,
    node_key_file: Path | None,
    rotate_node_key: bool,
    signing_key_file: Path | None,
    rotate_signing_key: bool,
) -> tuple[NodeKey, Signer | None]:
    """The node key and the signer the options ask for, announced with their public halves."""
    from ..confidential import NodeKey
    from ..server import load_node_key, load_signer

    if node_key_file is None:
        node_key, origin = NodeKey(), "new for this run"
    else:
        node_key, created = load_node_key(node_key_file, rotate=rotate_node_key)
        origin = f"{'new, written to' if created else 'from'} {node_key_file}"
    console.print(f"Node key (X25519, confidential chat): {node_key.public_key_base64}  ({origin})", soft_wrap=True)
    signer: Signer | None = None
    if signing_key_file is not None:
        signer, created = load_signer(signing_key_file, rotate=rotate_signing_key)
        origin = f"{'new, written to' if created else 'from'} {signing_key_file}"
        console.print(f"Signing key (Ed25519): {signer.public_key_base64}  ({origin})", soft_wrap=True)
    return node_key, signer


def _check_join_options(
    join_url: str | None, node_name: str | None, signing_key_file: Path | None, api_key: str | None
) -> None:
    if join_url is None:
        return
    if node_name is None or signing_key_file is None:
        raise click.UsageError("--join needs --node-name and --signing-key-file (the key the gateway trusts)")
    if not join_url.startswith(("http://", "https://")):
        raise click.UsageError("--join takes the gateway's http:// or https:// URL")
    if api_key:
        raise click.UsageError("--join serves the gateway, which sends no API key: leave --api-key out")


async def _serve_and_announce(
    server: Any,
    console: Console,
    model_id: str,
    *,
    with_key: bool,
    signed: bool,
    membership: GatewayMembership | None = None,
    public_url: str | None = None,
) -> None:
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    if server.started:
        port = server.servers[0].sockets[0].getsockname()[1]
        url = _client_url(server.config.host, port)
        # soft_wrap: never break a URL or the curl line, so both can be copied as printed.
        lines = [
            Text(),
            Text.assemble("chunkwise is serving ", (model_id, "bold green"), " at ", (url, "bold cyan")),
            Text(f"  Playground: {url}/   OpenAPI: {url}/openapi.json   metrics: {url}/metrics   Ctrl-C to stop"),
            Text(f"  Endpoints: {url}/v1/chat/completions, {url}/v1/responses, {url}/v1/messages"),
            *([Text(f"  Answers are signed; the public key: {url}/signing-key")] if signed else []),
            Text("  Try:"),
            Text("  " + curl_example(url, model_id, with_key=with_key)),
            Text(),
        ]
        for line in lines:
            console.print(line, soft_wrap=True)
        if membership is not None:
            joining = asyncio.create_task(membership.run(public_url or url))
            console.print(f"  Joining the gateway {membership.gateway_url} as {membership.name}", soft_wrap=True)
            try:
                await serving
            finally:
                joining.cancel()
                await asyncio.gather(joining, return_exceptions=True)
            return
    await serving
