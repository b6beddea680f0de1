"""``chunkwise serve --ray``: deploy the engine on a Ray cluster before the server starts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.text import Text

from ._progress import spinner

if TYPE_CHECKING:
    from ..ray import RayDeployment

__all__ = ["parse_autoscaling_options", "start_deployment"]


def parse_autoscaling_options(options: tuple[str, ...]) -> dict[str, float]:
    parsed: dict[str, float] = {}
    for option in options:
        key, sep, value = option.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            parsed[key.strip()] = float(value)
        except ValueError:
            message = f"expected KEY=NUMBER, got {option!r}"
            raise click.BadParameter(message, param_hint="--autoscaling-option") from None
    return parsed


def start_deployment(
    console: Console,
    model_path: Path | None,
    engine_options: dict[str, Any],
    *,
    address: str,
    replicas: int,
    min_replicas: int | None,
    max_replicas: int | None,
    replica_cpus: float,
    max_ongoing_requests: int,
    app_name: str,
    autoscaling_options: tuple[str, ...],
    prefix_affinity: bool,
) -> RayDeployment:
    """Connect to the cluster, deploy the replicas and wait until they serve; the caller closes the result."""
    from ..engine import LlamaCppEngine
    from ..ray import RayDeployment, RayDeploymentSettings

    settings = RayDeploymentSettings(
        address=address,
        replicas=replicas,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        autoscaling=parse_autoscaling_options(autoscaling_options),
        replica_cpus=replica_cpus,
        max_ongoing_requests=max_ongoing_requests,
        app_name=app_name,
        prefix_affinity=prefix_affinity,
    )
    replica_options = {**engine_options, "model_path": str(model_path) if model_path is not None else None}
    deployment = RayDeployment(settings, replica_options)
    # The ingress validates and counts requests with its own copy of the tokenizer and template (the
    # weights are memory-mapped, so on a replica's machine they are shared); it never generates.
    validator = LlamaCppEngine(model_path, **{**engine_options, "n_threads": 1})
    try:
        with spinner(console, f"Deploying the model on the Ray cluster ({address}) ..."):
            deployment.start(validator)
    except BaseException:
        validator.close()
        deployment.close()
        raise
    scale = (
        f"{min_replicas}..{max_replicas} replicas (autoscaling)"
        if settings.autoscaled
        else f"{replicas} replica{'s' if replicas > 1 else ''}"
    )
    console.print(
        Text.assemble(
            "Ray Serve: ",
            (scale, "bold"),
            " of ",
            (validator.model_id, "bold"),
            f" on the cluster at {deployment.gcs_address}",
        ),
        soft_wrap=True,
    )
    return deployment
