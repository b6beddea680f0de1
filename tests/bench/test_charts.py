"""The bench scripts' charts: a PNG drawn from given numbers, without running a benchmark."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import charts
from charts import CHART_DIR, Panel, add_chart_options, chart_path, colours, draw_bars

GROUPS = ["1 stream", "4 streams", "8 streams"]


def test_draws_a_png_with_a_bar_for_every_contender(tmp_path: Path) -> None:
    panels = [
        Panel(
            "aggregate tokens/s", "tokens/s", GROUPS, {"chunkwise": [120, 180, 240], "llama-server": [130, 190, 250]}
        ),
        Panel("p50 time to first token", "ms", GROUPS, {"chunkwise": [70, 150, 280], "llama-server": [60, 190, 310]}),
    ]
    path = draw_bars(tmp_path / "charts" / "batching.png", "batching", panels, caption="a caption")

    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.width > image.height > 200
        pixels = image.convert("RGB").getcolors(maxcolors=image.width * image.height)
    assert pixels is not None
    count = {colour: number for number, colour in pixels}
    for colour in colours(["chunkwise", "llama-server"]).values():
        # Far more pixels than the legend's patch: the contender's bars are drawn, in its colour.
        assert count.get(tuple(round(channel * 255) for channel in colour[:3]), 0) > 5_000


def test_a_missing_value_leaves_its_bar_out(tmp_path: Path) -> None:
    panel = Panel("tokens/s by task", "tokens/s", ["copy", "json"], {"chunkwise": [100.0, float("nan")]})
    assert draw_bars(tmp_path / "one.png", "speculation", [panel]).stat().st_size > 0


def test_values_must_match_the_groups() -> None:
    with pytest.raises(ValueError, match="2 values for 3 groups"):
        Panel("tokens/s", "tokens/s", GROUPS, {"chunkwise": [1.0, 2.0]})


def test_panels_must_name_the_same_contenders(tmp_path: Path) -> None:
    first = Panel("a", "tokens/s", ["x"], {"chunkwise": [1.0]})
    second = Panel("b", "ms", ["x"], {"llama-server": [1.0]})
    with pytest.raises(ValueError, match="same contenders"):
        draw_bars(tmp_path / "chart.png", "mixed", [first, second])
    assert not (tmp_path / "chart.png").exists()


def test_options_default_to_docs_bench_and_no_chart_turns_it_off() -> None:
    parser = argparse.ArgumentParser()
    add_chart_options(parser, "batching")
    assert chart_path(parser.parse_args([])) == CHART_DIR / "batching.png"
    assert CHART_DIR.parts[-2:] == ("docs", "bench")
    assert chart_path(parser.parse_args(["--chart", "x.png"])) == Path("x.png")
    assert chart_path(parser.parse_args(["--no-chart"])) is None


def test_importing_the_module_does_not_load_matplotlib() -> None:
    bench = str(Path(charts.__file__).parent)
    code = f"import sys; sys.path.insert(0, {bench!r}); import charts; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
