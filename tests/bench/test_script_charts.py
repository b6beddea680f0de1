"""Each bench script's chart shows exactly the numbers of the table it prints, drawn from made-up results."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

import bench_batching
import bench_embeddings
import bench_speculation
import charts
from bench_server import ConcurrentResult, StreamResult


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Sequence[charts.Panel]]:
    """The panels of every chart drawn, which are still written as PNG files."""
    panels: list[Sequence[charts.Panel]] = []

    def draw_and_keep(path: Path, title: str, given: Sequence[charts.Panel], caption: str = "") -> Path:
        panels.append(given)
        return charts.draw_bars(path, title, given, caption)

    for module in (bench_batching, bench_speculation, bench_embeddings):
        monkeypatch.setattr(module, "draw_bars", draw_and_keep)
    return panels


def test_batching(tmp_path: Path, drawn: list[Sequence[charts.Panel]]) -> None:
    def server(tokens: int, ttft: float) -> bench_batching.ServerResult:
        result = bench_batching.ServerResult()
        for streams in (1, 4, 8):
            # First tokens spread out, so that the p50 and p99 columns differ.
            made = [StreamResult(ttft * (index + 1), tokens, 1.0, "text", True) for index in range(streams)]
            result.rounds[streams] = [ConcurrentResult(made, 1.5 + streams / 10)]
        return result

    results = {"chunkwise": server(64, 0.07), "llama-server": server(60, 0.09)}
    bench_batching.chart(tmp_path / "batching.png", results, (1, 4, 8), "caption")

    assert (tmp_path / "batching.png").stat().st_size > 0
    [panels] = drawn
    assert [list(panel.groups) for panel in panels] == [["1 stream", "4 streams", "8 streams"]] * 2
    assert list(panels[0].series) == ["chunkwise", "llama-server"]
    table, _ = bench_batching.report(results["chunkwise"], results["llama-server"], (1, 4, 8))
    for name in results:
        for index, streams in enumerate((1, 4, 8)):
            rate, ttft = panels[0].series[name][index], panels[1].series[name][index]
            assert f"| {streams} | {name} | {rate:.1f} | {ttft:.0f} ms |" in table


def test_speculation(tmp_path: Path, drawn: list[Sequence[charts.Panel]]) -> None:
    tasks = ["copy", "story"]
    results = [
        bench_speculation.Contender(
            name, [], "", {task: bench_speculation.TaskResult(rate + index, 200) for task in tasks}
        )
        for index, (name, rate) in enumerate([("chunkwise", 104.5), ("chunkwise --no-speculation", 52.9)])
    ]
    bench_speculation.chart(tmp_path / "speculation.png", results, tasks, "caption")

    assert (tmp_path / "speculation.png").stat().st_size > 0
    [[panel]] = drawn
    assert list(panel.groups) == tasks
    assert list(panel.series) == ["chunkwise", "chunkwise --no-speculation"]
    table, _ = bench_speculation.report(results, tasks)
    for index, task in enumerate(tasks):
        [row] = [line for line in table.splitlines() if line.startswith(f"| {task} |")]
        printed = re.findall(r"\| ([\d.]+) \(", row)
        assert printed == [f"{values[index]:.1f}" for values in panel.series.values()]


def test_embeddings(tmp_path: Path, drawn: list[Sequence[charts.Panel]]) -> None:
    levels = [(inputs, concurrent) for concurrent in (1, 8) for inputs in (1, 16)]
    results = {
        name: bench_embeddings.ServerResult(
            {level: [base * level[0] * level[1]] for level in levels}, [[1.0, 0.0]], [[1.0, 0.0]]
        )
        for name, base in (("chunkwise", 3.0), ("llama-server", 2.0))
    }
    bench_embeddings.chart(tmp_path / "embeddings.png", results, levels, "caption")

    assert (tmp_path / "embeddings.png").stat().st_size > 0
    [panels] = drawn
    assert [panel.title for panel in panels] == [
        "one request at a time (higher is better)",
        "8 requests at once (higher is better)",
    ]
    assert [list(panel.groups) for panel in panels] == [["1 input", "16 inputs"]] * 2
    table, _ = bench_embeddings.report(results, levels)
    for panel, concurrent in zip(panels, (1, 8), strict=True):
        for index, inputs in enumerate((1, 16)):
            chunkwise, llama_server = (panel.series[name][index] for name in results)
            assert f"| {inputs} | {concurrent} | {chunkwise:.1f} | {llama_server:.1f} |" in table
