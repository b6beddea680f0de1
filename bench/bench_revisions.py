"""A/B benchmark: ``chunkwise serve`` from this tree against ``chunkwise serve`` from another source tree.

For changes that must not cost speed (the hardening of issue #9 promised no slowdown over 3%)::

    git archive main | tar -x -C /tmp/main-tree
    flock /tmp/chunkwise-bench.lock .venv/bin/python bench/bench_revisions.py --baseline-src /tmp/main-tree/src

Both servers run at once on the bundled model with the same options and the request of
``bench_server.py`` (greedy, ``max_tokens`` 128); streams alternate between them, one at a time, so a shared
machine's changing load falls on both alike. Printed: medians of decode tokens/s and time to first token,
and the median of the per-pair ratios (this tree / baseline), which is what to compare against 1.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from pathlib import Path

import httpx

from bench_server import (  # bench/ is on sys.path when this file runs as a script
    StreamResult,
    chunkwise_command,
    free_port,
    load,
    machine,
    median,
    request_body,
    running,
    spread,
    stream_once,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-src", type=Path, required=True, help="the other tree's src/ directory")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=15, help="streams per server, after one warm-up each")
    args = parser.parse_args()
    baseline_src: Path = args.baseline_src.resolve()
    if not (baseline_src / "chunkwise" / "__init__.py").is_file():
        parser.error(f"{baseline_src} holds no chunkwise package")

    started = datetime.datetime.now(datetime.UTC)
    print(f"- Machine: {machine()}")
    print(f"- Date: {started:%Y-%m-%d %H:%M} UTC; load average at start {load()}")
    print(f"- Command: `python bench/bench_revisions.py {' '.join(sys.argv[1:])}`")
    body = request_body(args.max_tokens, usage=True)
    this_url, base_url = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    this_tree: list[StreamResult] = []
    baseline: list[StreamResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-revisions-") as logs:
        environment = {**os.environ, "PYTHONPATH": str(baseline_src)}
        base_command = ["env", f"PYTHONPATH={environment['PYTHONPATH']}", *chunkwise_command(base_url)]
        with (
            running(chunkwise_command(this_url), this_url, Path(logs) / "this.log"),
            running(base_command, base_url, Path(logs) / "baseline.log"),
            httpx.Client(base_url=this_url, timeout=300) as this_client,
            httpx.Client(base_url=base_url, timeout=300) as base_client,
        ):
            stream_once(this_client, body)  # warm-up: caches, first-request costs
            stream_once(base_client, body)
            for run in range(args.runs):
                pair = [(this_client, this_tree), (base_client, baseline)]
                for client, results in pair if run % 2 == 0 else pair[::-1]:
                    results.append(stream_once(client, body)[0])
    speed = [a.tokens_per_second / b.tokens_per_second for a, b in zip(this_tree, baseline, strict=True)]
    ttft = [a.ttft - b.ttft for a, b in zip(this_tree, baseline, strict=True)]
    same_text = all(a.text == b.text for a, b in zip(this_tree, baseline, strict=True))
    print(f"- load average at end {load()}; {args.runs} streams each, alternating; same text: {same_text}\n")
    print("| measurement | baseline tree | this tree | this vs baseline (median of run pairs; range) |")
    print("|---|---|---|---|")
    this_speed = median([result.tokens_per_second for result in this_tree])
    base_speed = median([result.tokens_per_second for result in baseline])
    print(
        f"| decode speed | {base_speed:.1f} tok/s | {this_speed:.1f} tok/s | ×{median(speed):.3f} ({spread(speed)}) |"
    )
    this_ttft = median([result.ttft for result in this_tree]) * 1000
    base_ttft = median([result.ttft for result in baseline]) * 1000
    print(
        f"| time to first token | {base_ttft:.1f} ms | {this_ttft:.1f} ms | "
        f"{median(ttft) * 1000:+.1f} ms ({spread(ttft, 1000, 1)} ms) |"
    )


if __name__ == "__main__":
    main()
