"""scripts/test, the command CI runs, fails when any check fails: a lint failure must never pass unseen."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
TOOLS = ("ruff", "mypy", "lint-imports", "python")


def fake_checkout(tmp_path: Path, failing: str) -> Path:
    """scripts/test beside a set-up step and tools that only log their call; ``failing`` exits 1."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "test", tmp_path / "scripts" / "test")
    setup = tmp_path / "scripts" / "setup"
    setup.write_text("#!/usr/bin/env bash\nexit 0\n")
    setup.chmod(0o755)
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in TOOLS:
        script = bin_dir / tool
        status = 1 if tool == failing else 0
        script.write_text(f'#!/usr/bin/env bash\necho "{tool} $*" >> "$(dirname "$0")/calls"\nexit {status}\n')
        script.chmod(0o755)
    return tmp_path


@pytest.mark.parametrize("failing", ["ruff", "mypy", "lint-imports"])
def test_a_failing_check_fails_the_test_command_before_pytest_runs(tmp_path: Path, failing: str) -> None:
    checkout = fake_checkout(tmp_path, failing)
    result = subprocess.run(["bash", "scripts/test"], cwd=checkout, capture_output=True, text=True, timeout=60)
    calls = (checkout / ".venv" / "bin" / "calls").read_text().splitlines()
    assert result.returncode != 0, result.stdout
    assert not any(call.startswith("python") for call in calls), calls


def test_the_test_command_runs_every_check_then_pytest_when_all_pass(tmp_path: Path) -> None:
    checkout = fake_checkout(tmp_path, failing="")
    result = subprocess.run(["bash", "scripts/test", "-q"], cwd=checkout, capture_output=True, text=True, timeout=60)
    calls = (checkout / ".venv" / "bin" / "calls").read_text().splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert [call.split()[0] for call in calls] == ["ruff", "ruff", "mypy", "lint-imports", "python"]
    assert calls[-1] == "python -m pytest -q"
