"""``--ray`` without a cluster: the extra is optional, options are checked before anything starts."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from click.testing import CliRunner

from chunkwise.cli import main
from chunkwise.cli._ray import parse_autoscaling_options
from chunkwise.ray import RayDeploymentSettings, RayUnavailableError
from chunkwise.ray._cluster import import_ray


def test_the_plain_server_never_imports_ray() -> None:
    code = (
        "import sys, chunkwise.server, chunkwise.cli, chunkwise.ray\n"
        "from chunkwise.cli import _serve\n"
        "assert 'ray' not in sys.modules, sorted(m for m in sys.modules if m.startswith('ray'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RayUnavailableError, match=r"pip install 'chunkwise\[ray\]'"):
        import_ray()


def test_help_lists_the_ray_options() -> None:
    output = CliRunner().invoke(main, ["serve", "--help"]).output
    for option in ["--ray", "--replicas", "--min-replicas", "--max-replicas", "--replica-cpus", "--autoscaling-option"]:
        assert option in output


def test_autoscaling_options_are_numbers() -> None:
    assert parse_autoscaling_options(("upscale_delay_s=1.5", "downscale_delay_s = 2")) == {
        "upscale_delay_s": 1.5,
        "downscale_delay_s": 2.0,
    }
    result = CliRunner().invoke(main, ["serve", "--ray", "local", "--autoscaling-option", "fast"])
    assert result.exit_code == 2 and "KEY=NUMBER" in result.output


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_replicas": 2}, "go together"),
        ({"min_replicas": 3, "max_replicas": 2}, "min_replicas <= max_replicas"),
        ({"replicas": 0}, "replicas must be >= 1"),
        ({"address": "ray://head:10001"}, "cannot stream through Ray Client"),
    ],
)
def test_deployment_settings_are_checked(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RayDeploymentSettings(**{"address": "local", **fields})


def test_autoscaling_settings_become_ray_serve_options() -> None:
    settings = RayDeploymentSettings(
        address="auto", min_replicas=1, max_replicas=3, autoscaling={"upscale_delay_s": 1.0}, prefix_affinity=False
    )
    options = settings.deployment_options()
    assert "num_replicas" not in options
    assert options["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 3,
        "target_ongoing_requests": 1,
        "upscale_delay_s": 1.0,
    }
    assert settings.most_replicas == 3
