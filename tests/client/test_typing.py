"""The overloads on ``stream`` tell a type checker what ``create`` returns (mypy's ``assert_type``)."""

from __future__ import annotations

from pathlib import Path

from mypy import api

EXAMPLES = Path(__file__).with_name("typing_examples.py")

# Proof that assert_type is really checked: the same run must reject a wrong expectation.
WRONG = """\
from typing import assert_type
import chunkwise
from chunkwise.types import ChatCompletion
def f(client: chunkwise.Client) -> None:
    assert_type(client.chat.completions.create(model="m", messages=[], stream=True), ChatCompletion)
"""


def test_mypy_infers_completion_or_stream(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_expectation.py"
    wrong.write_text(WRONG)

    stdout, stderr, _ = api.run(["--strict", "--no-incremental", "--cache-dir=/dev/null", str(EXAMPLES), str(wrong)])

    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, stdout + stderr
    assert errors[0].startswith(str(wrong))
    assert 'Expression is of type "Stream", not "ChatCompletion"' in errors[0]
