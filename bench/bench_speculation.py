"""Speculative decoding benchmark: ``chunkwise serve`` against ``llama-server`` with each of its n-gram drafters.

One command, on the same GGUF, the servers taking turns (see below)::

    flock /tmp/chunkwise-bench.lock .venv/bin/python bench/bench_speculation.py --write BENCHMARKS.md

Contenders: chunkwise with its defaults (speculation on), with ``--no-speculation`` and with
``--cache-type-k f16`` (llama.cpp's default key type, for which the engine guards one batch shape), and for the json
task also with ``--jump-forward`` (with and without speculation); llama-server
(``--parallel 4``, its default) without speculation and with ``--spec-type ngram-simple``, ``ngram-mod`` and
``ngram-cache``. llama-server is built by bench/build_llama_server.sh the first time (about 8 minutes).

All servers run at once and take turns: each run of a task goes to every contender in a row, so a burst of load
from elsewhere on the machine hits them alike. Tasks, each a greedy request of ``--max-tokens`` tokens
(non-streamed, or streamed with ``--stream``; the end-of-text tokens are banned, so that every server writes that
many unless a grammar ends the answer, and ``--stop-at-eos`` lets answers end there), timed from request to the
answer's end, ``--runs`` runs after one warm-up, each run another instance of the task (other names, dates,
sums, story), so that neither server answers from a cache of the same request's earlier answer, and reported as
all the runs together (their tokens over their seconds; the best single run beside it): **copy** (repeat a
~140-token text), **json** (extract a meeting's decisions with a ``json_schema``), **story** (text that
repeats nothing) and **multi-turn** (a question at the end of a long shared conversation, answered by
quoting it). Reported per task: tokens/s of every contender, the
guesses chunkwise made and kept (from ``/metrics``) and llama-server's (from its ``timings``), whether
chunkwise's texts are the same with and without speculation, and the ratios the issue's acceptance names.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench_batching import build_llama_server
from bench_server import free_port, load, machine, running, stream_once
from charts import Panel, add_chart_options, chart_path, draw_bars
from chunkwise.engine import DEFAULT_MODEL_ID, default_model_path
from sections import write_section  # bench/ is on sys.path when this file runs as a script

SECTION = "## Speculative decoding"
#: Each run's instance of a task differs (place, dates, sums, story), so that no contender answers from a
#: cache of the same request's earlier answer: the first is the warm-up.
VARIANTS = [
    ("town council", "4 March", "Mill Street", "2.4 million", "north road", "pension fund", "July", "1 April"),
    ("parish board", "9 May", "Quay Lane", "1.1 million", "harbour wall", "school fund", "August", "6 June"),
    ("city assembly", "2 October", "Elm Avenue", "3.7 million", "east bridge", "housing fund", "June", "30 October"),
    ("village committee", "15 January", "Church Row", "0.8 million", "west lane", "sports fund", "May", "12 February"),
    ("county board", "21 November", "Station Road", "5.2 million", "ring road", "health fund", "April", "3 December"),
    ("harbour trust", "7 June", "Bank Street", "1.9 million", "south quay", "road fund", "September", "5 July"),
    ("district council", "18 February", "Hill Road", "4.6 million", "old mill", "arts fund", "July", "11 March"),
    ("borough board", "26 August", "Green Row", "2.2 million", "canal path", "youth fund", "October", "23 September"),
    ("market committee", "3 April", "King Street", "6.1 million", "town hall", "heritage fund", "June", "8 May"),
]
STORIES = [
    "a dragon who learns to cook",
    "a lighthouse keeper who finds a map",
    "a robot who learns to paint",
    "a girl who can talk to rivers",
    "a baker whose bread makes people sing",
    "a cat who runs a post office",
    "an old sailor who builds a clock",
    "a boy who plants a forest",
    "a fox who wants to fly",
]
DECISIONS_SCHEMA = {
    "type": "object",
    "properties": {
        "decisions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"topic": {"type": "string"}, "decision": {"type": "string"}},
                "required": ["topic", "decision"],
            },
        }
    },
    "required": ["decisions"],
}


def task_bodies(max_tokens: int, variant: int) -> dict[str, dict[str, Any]]:
    body, date, street, budget, road, fund, month, following = VARIANTS[variant % len(VARIANTS)]
    approved = f"The council approved the new library on {street}, with a budget of {budget}, to open next spring."
    delayed = f"It delayed the repairs to the {road} until the summer, because the contractor cannot start earlier."
    asked = f"It asked the treasurer for a report on the {fund} before the next meeting."
    meeting = (
        f"Minutes of the {body}, {date}. Present: the mayor, six councillors and the treasurer. {approved} "
        f"{delayed} {asked} It agreed to hold the summer festival in the park again, on the second weekend of "
        f"{month}. It rejected the proposal to close the old bridge to cars. The next meeting is on {following}."
    )
    history = [
        {"role": "system", "content": "You are a helpful assistant who answers precisely and quotes the notes."},
        {"role": "user", "content": f"Here are the notes of a meeting:\n\n{meeting}\n\nWhat did the council approve?"},
        {"role": "assistant", "content": approved},
        {"role": "user", "content": "And what did it delay, and why?"},
        {"role": "assistant", "content": delayed},
        {"role": "user", "content": "What did it ask the treasurer for?"},
        {"role": "assistant", "content": asked},
        {"role": "user", "content": "Now list every decision of the meeting, quoting the notes word for word."},
    ]

    def chat(messages: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
        return {"model": DEFAULT_MODEL_ID, "messages": messages, "max_tokens": max_tokens, "temperature": 0, **extra}

    schema = {"type": "json_schema", "json_schema": {"name": "decisions", "schema": DECISIONS_SCHEMA}}
    story = STORIES[variant % len(STORIES)]
    return {
        "copy": chat([{"role": "user", "content": f"Repeat this text exactly, word for word:\n\n{meeting}"}]),
        "json": chat(
            [{"role": "user", "content": f"Extract every decision of this meeting as JSON:\n\n{meeting}"}],
            response_format=schema,
        ),
        "story": chat([{"role": "user", "content": f"Write a long story about {story}."}]),
        "multi-turn": chat(history),
    }


@dataclass
class TaskResult:
    """One answer, or all the timed runs of a task together (see ``overall``)."""

    tokens_per_second: float = 0.0
    tokens: int = 0
    seconds: float = 0.0
    text: str = ""
    drafted: int = 0
    accepted: int = 0
    #: Every timed run's text, in order.
    texts: list[str] = field(default_factory=list)
    #: The fastest single run's tokens/s.
    best: float = 0.0


def overall(runs: list[TaskResult]) -> TaskResult:
    """The runs together: all their tokens over all their seconds, every guess, every text."""
    tokens, seconds = sum(run.tokens for run in runs), sum(run.seconds for run in runs)
    return TaskResult(
        tokens / seconds,
        tokens,
        seconds,
        runs[-1].text,
        sum(run.drafted for run in runs),
        sum(run.accepted for run in runs),
        [run.text for run in runs],
        max(run.tokens_per_second for run in runs),
    )


@dataclass
class Contender:
    name: str
    command: list[str]
    url: str
    tasks: dict[str, TaskResult] = field(default_factory=dict)


def draft_counters(client: httpx.Client) -> tuple[int, int]:
    """chunkwise's guessed and kept tokens so far, by speculation and jump-forward (0, 0 from other servers)."""
    response = client.get("/metrics")
    text = response.text if response.status_code == 200 else ""
    values = []
    for name in ("draft_tokens", "draft_accepted_tokens", "jump_forward_tokens", "jump_forward_accepted_tokens"):
        found = re.search(rf"^chunkwise_{name}_total (\S+)$", text, re.MULTILINE)
        values.append(int(float(found.group(1))) if found else 0)
    return values[0] + values[2], values[1] + values[3]


def ask(client: httpx.Client, body: dict[str, Any], stream: bool) -> TaskResult:
    """One request, timed from sending it to the end of its answer; guesses from /metrics or llama-server's timings."""
    before = draft_counters(client)
    started = time.perf_counter()
    timings: dict[str, Any] = {}
    if stream:
        streamed, _ = stream_once(client, {**body, "stream": True, "stream_options": {"include_usage": True}})
        elapsed = time.perf_counter() - started
        tokens, text = streamed.tokens, streamed.text
    else:
        response = client.post("/v1/chat/completions", json=body)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        answer = response.json()
        tokens, timings = answer["usage"]["completion_tokens"], answer.get("timings") or {}
        text = answer["choices"][0]["message"].get("content") or ""
    after = draft_counters(client)
    return TaskResult(
        tokens / elapsed,
        tokens,
        elapsed,
        text,
        after[0] - before[0] or int(timings.get("draft_n", 0)),
        after[1] - before[1] or int(timings.get("draft_n_accepted", 0)),
    )


def end_of_text_tokens(model: Path) -> list[int]:
    """The model's end-of-generation tokens (its eos and eot), read from the GGUF's vocabulary."""
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    loaded = llama_cpp.llama_model_load_from_file(str(model).encode(), params)
    try:
        vocab = llama_cpp.llama_model_get_vocab(loaded)
        return sorted({llama_cpp.llama_vocab_eos(vocab), llama_cpp.llama_vocab_eot(vocab)} - {-1})
    finally:
        llama_cpp.llama_model_free(loaded)


def measure(
    contenders: list[Contender], max_tokens: int, tasks: list[str], runs: int, stream: bool, banned: list[int]
) -> None:
    """Every run of a task goes to each contender in turn; a contender's result is all its runs together.

    Each run is another instance of the task, and the same instance can lead two servers' greedy decoding to
    different texts (their arithmetic differs in the last bits), one easier to guess than the other. The best
    run of each would compare the luckiest text of each; all the runs together compare the same work.

    ``banned`` tokens get a bias of -100 in every request (the end-of-text tokens, so that every answer is
    ``max_tokens`` long whatever the servers' last bits make greedy decoding choose).
    """
    bias = {"logit_bias": {str(token): -100 for token in banned}} if banned else {}

    def body_of(run: int, task: str) -> dict[str, Any]:
        return {**task_bodies(max_tokens, run)[task], **bias}

    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(httpx.Client(base_url=contender.url, timeout=600)) for contender in contenders]
        for task in tasks:
            for client in clients:
                ask(client, body_of(0, task), stream)  # warm-up
            runs_of: list[list[TaskResult]] = [[] for _ in contenders]
            for run in range(1, runs + 1):
                body = body_of(run, task)
                for client, results in zip(clients, runs_of, strict=True):
                    results.append(ask(client, body, stream))
            for contender, results in zip(contenders, runs_of, strict=True):
                together = contender.tasks[task] = overall(results)
                print(
                    f"  {contender.name} {task}: {together.tokens_per_second:.1f} tok/s over {len(results)} runs "
                    f"({together.tokens} tokens; best run {together.best:.1f} tok/s)",
                    flush=True,
                )


SPEC_TYPES = ("ngram-simple", "ngram-mod", "ngram-cache")
#: How answers end, by ``--stop-at-eos``.
ENDING = {True: "ending at end of text", False: "end of text banned: only a grammar may end them early"}
JUMPING = "--jump-forward"
#: llama.cpp's default key cache type, where the engine guards one batch shape (see engine/_splits.py).
F16_KEYS = "--cache-type-k f16"


def contenders(binary: Path | None, model: Path, tasks: list[str]) -> list[Contender]:
    def chunkwise(name: str, *options: str) -> Contender:
        port = free_port()
        command = [sys.executable, "-m", "chunkwise", "serve", "--port", str(port), "--log-level", "warning"]
        return Contender(name, [*command, *options], f"http://127.0.0.1:{port}")

    def llama_server(name: str, *options: str) -> Contender:
        assert binary is not None
        port = free_port()
        command = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "--parallel", "4"]
        return Contender(name, [*command, *options], f"http://127.0.0.1:{port}")

    ours = [
        chunkwise("chunkwise"),
        chunkwise("chunkwise --no-speculation", "--no-speculation"),
        chunkwise(f"chunkwise {F16_KEYS}", *F16_KEYS.split()),
    ]
    if "json" in tasks:  # jump-forward only acts on grammars
        ours += [
            chunkwise(f"chunkwise {JUMPING}", JUMPING),
            chunkwise(f"chunkwise --no-speculation {JUMPING}", "--no-speculation", JUMPING),
        ]
    if binary is None:
        return ours
    return [
        *ours,
        llama_server("llama-server"),
        *(llama_server(f"llama-server {kind}", "--spec-type", kind) for kind in SPEC_TYPES),
    ]


def report(results: list[Contender], tasks: list[str]) -> tuple[str, list[str]]:
    by_name = {contender.name: contender.tasks for contender in results}
    rows = ["| task | " + " | ".join(contender.name for contender in results) + " |"]
    rows.append("|---" * (len(results) + 1) + "|")
    for task in tasks:
        cells = []
        for contender in results:
            result = contender.tasks[task]
            rate = f"{result.drafted and result.accepted / result.drafted:.0%} of {result.drafted}"
            cells.append(f"{result.tokens_per_second:.1f} ({result.tokens} tok, kept {rate})")
        rows.append(f"| {task} | " + " | ".join(cells) + " |")
    checks = []
    ours, plain, server = (
        by_name.get("chunkwise"),
        by_name.get("chunkwise --no-speculation"),
        by_name.get("llama-server"),
    )
    for task in tasks:
        if ours is not None and plain is not None:
            ratio = ours[task].tokens_per_second / plain[task].tokens_per_second
            same = "identical" if ours[task].texts == plain[task].texts else "DIFFERENT"
            checks.append(f"{task}: speculation {ratio:.2f}× chunkwise without it; texts {same}")
        if ours is not None and F16_KEYS in " ".join(by_name):
            f16 = by_name[f"chunkwise {F16_KEYS}"][task]
            ratio = ours[task].tokens_per_second / f16.tokens_per_second
            checks.append(f"{task}: q8_0 keys {ratio:.2f}× f16 keys (`{F16_KEYS}`)")
        if task == "json":
            for name, without in ((f"chunkwise {JUMPING}", ours), (f"chunkwise --no-speculation {JUMPING}", plain)):
                if name not in by_name or without is None:
                    continue
                jumping = by_name[name][task]
                ratio = jumping.tokens_per_second / without[task].tokens_per_second
                same = "identical" if jumping.texts == without[task].texts else "DIFFERENT"
                checks.append(f"{task}: `{name}` {ratio:.2f}× without jump-forward; texts {same}")
        if ours is None:
            continue
        if task == "story" and server is not None:
            ratio = ours[task].tokens_per_second / server[task].tokens_per_second
            verdict = "meets" if ratio >= 1.0 else "MISSES"
            checks.append(
                f"{task}: chunkwise {ratio:.2f}× llama-server's default ({verdict} ≥ 1.0×; best runs "
                f"{ours[task].best / server[task].best:.2f}×)"
            )
        speculative = {
            kind: by_name[f"llama-server {kind}"][task] for kind in SPEC_TYPES if f"llama-server {kind}" in by_name
        }
        if task != "story" and speculative:
            best_kind = max(speculative, key=lambda kind: speculative[kind].tokens_per_second)
            bar = 1.3 if task == "json" else 1.0
            ratio = ours[task].tokens_per_second / speculative[best_kind].tokens_per_second
            verdict = "meets" if ratio >= bar else "MISSES"
            best_runs = ours[task].best / max(result.best for result in speculative.values())
            checks.append(
                f"{task}: chunkwise {ratio:.2f}× llama-server {best_kind} ({verdict} ≥ {bar}×; best runs "
                f"{best_runs:.2f}× its fastest mode's)"
            )
    return "\n".join(rows), checks


def chart(path: Path, results: list[Contender], tasks: list[str], caption: str) -> None:
    """The printed table's tokens/s, as bars by task."""
    rates = {contender.name: [contender.tasks[task].tokens_per_second for task in tasks] for contender in results}
    panel = Panel("tokens/s by task (higher is better)", "tokens/s", tasks, rates)
    draw_bars(path, "Speculative decoding: chunkwise serve vs llama-server", [panel], caption)
    print(f"drew {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: the bundled SmolLM2)")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument(
        "--runs", type=int, default=6, help=f"timed requests per task, after one warm-up (at most {len(VARIANTS) - 1})"
    )
    parser.add_argument("--llama-server", type=Path, default=None, help="a llama-server binary (default: build one)")
    parser.add_argument("--chunkwise-only", action="store_true", help="compare chunkwise with and without speculation")
    parser.add_argument("--task", action="append", default=None, help="a task to run, repeatable (default: all)")
    parser.add_argument(
        "--contender", action="append", default=None, help="a contender to run, by name, repeatable (default: all)"
    )
    parser.add_argument("--stream", action="store_true", help="stream the answers (timed to the last chunk)")
    parser.add_argument(
        "--stop-at-eos",
        action="store_true",
        help="let answers end at the model's end-of-text token (by default it is banned, so every answer is "
        "--max-tokens long on every server)",
    )
    parser.add_argument("--write", type=Path, default=None, help=f"update the '{SECTION}' section of this file")
    add_chart_options(parser, "speculation")
    args = parser.parse_args()
    if not 1 <= args.runs < len(VARIANTS):
        parser.error(f"--runs must be between 1 and {len(VARIANTS) - 1}: each run is another instance of the task")
    model = args.model or default_model_path()
    binary = None if args.chunkwise_only else args.llama_server or build_llama_server()
    tasks = args.task or list(task_bodies(args.max_tokens, 0))
    results = contenders(binary, model, tasks)
    if args.contender:
        unknown = set(args.contender) - {contender.name for contender in results}
        if unknown:
            parser.error(f"no such contender: {', '.join(sorted(unknown))}")
        results = [contender for contender in results if contender.name in args.contender]
    before = load()
    with tempfile.TemporaryDirectory() as logs, contextlib.ExitStack() as servers:
        for index, contender in enumerate(results):
            print(f"{contender.name}: {' '.join(contender.command)}", flush=True)
            servers.enter_context(running(contender.command, contender.url, Path(logs) / f"{index}.log"))
        banned = [] if args.stop_at_eos else end_of_text_tokens(model)
        measure(results, args.max_tokens, tasks, args.runs, args.stream, banned)
    table, checks = report(results, tasks)
    print(table)
    print("\n".join(checks))
    if args.write is not None:
        shown = "flock /tmp/chunkwise-bench.lock .venv/bin/python bench/bench_speculation.py --max-tokens "
        shown += f"{args.max_tokens} --runs {args.runs}" + "".join(f" --task {task}" for task in args.task or [])
        shown += "".join(f" --contender {json.dumps(name)}" for name in args.contender or [])
        shown += " --chunkwise-only" if args.chunkwise_only else ""
        shown += " --stream" if args.stream else ""
        shown += " --stop-at-eos" if args.stop_at_eos else ""
        shown += f" --write {args.write}"
        section = (
            f"{SECTION}\n\n"
            f"`{shown}` on {datetime.date.today().isoformat()}: {machine()}; load average before: {before}. "
            f"Same GGUF, all servers up at once and taking turns, {'streamed' if args.stream else 'non-streamed'} "
            f"greedy requests of {args.max_tokens} tokens at most "
            f"({ENDING[args.stop_at_eos]}), {args.runs} runs after a warm-up; tokens/s = "
            "completion tokens over the requests' wall time, all runs together. "
            f"'kept' is the share of guessed tokens the output kept.\n\n"
            f"{table}\n\n" + "\n".join(f"- {check}" for check in checks) + "\n"
        )
        write_section(args.write, SECTION, section)
        print(f"wrote the '{SECTION}' section of {args.write}")
    if (path := chart_path(args)) is not None:
        caption = f"non-streamed greedy requests of {args.max_tokens} tokens at most, {args.runs} runs together; "
        chart(path, results, tasks, caption + f"{datetime.date.today().isoformat()}, {machine()}")


if __name__ == "__main__":
    main()
