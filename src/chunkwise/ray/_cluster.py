"""Connecting to a Ray cluster, deploying the engine replicas with Ray Serve, and tearing both down.

``address`` is ``local`` (a private cluster on this machine, stopped on close), ``auto`` (the cluster that
``ray start`` made on this machine) or ``host:port`` (a cluster's GCS address, as ``ray start --head`` prints
it). ``ray://`` (Ray Client) is refused with an explanation: Ray Serve does not stream through it. Ray is
imported here only, so the plain server never needs it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette

from .._errors import ChunkwiseError
from ..engine import Engine
from ..server import ServerSettings
from ._admission import DeploymentAdmission
from ._engine import RayEngine
from ._load import DeploymentLoad
from ._replica import EngineReplica

__all__ = ["RayDeployment", "RayDeploymentSettings", "RayUnavailableError"]

logger = logging.getLogger("chunkwise.ray")

DEPLOYMENT_NAME = "EngineReplica"
#: How often the ingress asks the controller how many replicas run (for ``/metrics``).
STATUS_POLL_INTERVAL = 2.0


class RayUnavailableError(ChunkwiseError):
    """Ray Serve is not installed, or the cluster cannot be reached."""


def import_ray() -> Any:
    try:
        import ray
        from ray import serve  # noqa: F401
    except ImportError as exc:
        raise RayUnavailableError(
            "--ray needs Ray Serve, which is not installed: pip install 'chunkwise[ray]'"
        ) from exc
    return ray


def _loopback_only(address: str) -> bool:
    """``local``, or a cluster address on the loopback interface (one that ``local`` started)."""
    if address == "local":
        return True
    host = address.rpartition(":")[0].strip("[]")
    return host == "localhost" or host == "::1" or host.startswith("127.")


@dataclass(frozen=True, kw_only=True)
class RayDeploymentSettings:
    """How the engine is deployed; every field has a default but ``address``."""

    address: str
    #: Fixed replica count, unless ``min_replicas``/``max_replicas`` turn on autoscaling.
    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    #: Ray Serve ``AutoscalingConfig`` fields on top of chunkwise's defaults (e.g. ``upscale_delay_s``).
    autoscaling: Mapping[str, float] = field(default_factory=dict)
    #: Logical CPUs each replica reserves (fractions let several replicas share a core).
    replica_cpus: float = 1.0
    #: Requests Ray Serve sends to one replica at once; more wait in the router.
    max_ongoing_requests: int = 8
    #: The Ray Serve application name; two servers on one cluster need two names.
    app_name: str = "chunkwise"
    prefix_affinity: bool = True
    health_check_period_s: float = 5.0
    health_check_timeout_s: float = 30.0
    #: Logical CPUs of a ``local`` cluster (None: every core of this machine).
    local_cpus: float | None = None

    def __post_init__(self) -> None:
        if self.address.startswith("ray://"):
            # Ray Serve refuses streaming handles over Ray Client (checked with Ray 2.60), and chunkwise only streams.
            raise ValueError(
                "Ray Serve cannot stream through Ray Client (ray://); run chunkwise serve on a node of the cluster "
                "with --ray auto (or the GCS HOST:PORT that `ray start --head` printed)"
            )
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, not {self.replicas}")
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise ValueError("--min-replicas and --max-replicas go together")
        low, high = self.min_replicas, self.max_replicas
        if low is not None and high is not None and not 1 <= low <= high:
            raise ValueError(f"need 1 <= min_replicas <= max_replicas, not {low}..{high}")
        if self.replica_cpus <= 0:
            raise ValueError(f"replica_cpus must be > 0, not {self.replica_cpus}")
        if self.max_ongoing_requests < 1:
            raise ValueError(f"max_ongoing_requests must be >= 1, not {self.max_ongoing_requests}")

    @property
    def autoscaled(self) -> bool:
        return self.max_replicas is not None

    @property
    def most_replicas(self) -> int:
        return self.max_replicas if self.max_replicas is not None else self.replicas

    def deployment_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "name": DEPLOYMENT_NAME,
            "ray_actor_options": {"num_cpus": self.replica_cpus},
            "max_ongoing_requests": self.max_ongoing_requests,
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
            "graceful_shutdown_timeout_s": 5,
        }
        if self.autoscaled:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                # Scale on ongoing requests: one replica per request the engine runs at a time.
                "target_ongoing_requests": 1,
                **self.autoscaling,
            }
        else:
            options["num_replicas"] = self.replicas
        if self.prefix_affinity:
            from ray.serve.config import RequestRouterConfig

            from ._router import PrefixAffinityRouter

            options["request_router_config"] = RequestRouterConfig(request_router_class=PrefixAffinityRouter)
        return options


class RayDeployment:
    """The engine deployed on a cluster; :meth:`start` connects and deploys, :meth:`close` undoes both.

    Example::

        with RayDeployment(RayDeploymentSettings(address="local", replicas=2), {"n_threads": 1}) as deployment:
            app = deployment.create_app(ServerSettings())
    """

    def __init__(self, settings: RayDeploymentSettings, engine_options: Mapping[str, Any]) -> None:
        self.settings = settings
        self._engine_options = dict(engine_options)
        self._ray: Any = None
        self._started_cluster = False
        self._deployed = False
        self._stop_polling = threading.Event()
        self._replica_states: dict[str, int] | None = None
        self._engine: RayEngine | None = None
        self.gcs_address = ""

    @property
    def engine(self) -> RayEngine:
        """The engine the app serves; available once :meth:`start` has returned."""
        if self._engine is None:
            raise RuntimeError("RayDeployment.start() has not run")
        return self._engine

    def start(self, validator: Engine) -> RayEngine:
        """Connect, deploy (waits until the replicas are up) and return the engine the app serves."""
        if _loopback_only(self.settings.address) and "ray" not in sys.modules:
            # A private cluster serves this machine only. Ray otherwise advertises (and its processes talk
            # over) the machine's network address even when told 127.0.0.1; with this flag, read when Ray is
            # imported, its node address is the loopback one. A process joining such a cluster needs the same.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray = import_ray()
        from ray import serve

        settings = self.settings
        try:
            if settings.address == "local":
                ray.init(
                    num_cpus=settings.local_cpus,
                    include_dashboard=False,
                    # The replicas exchange only small messages; the default (30 % of RAM) is far too much.
                    object_store_memory=128 * 1024 * 1024,
                    logging_level=logging.WARNING,
                    configure_logging=False,
                    namespace="chunkwise",
                )
                self._started_cluster = True
            else:
                ray.init(address=settings.address, logging_level=logging.WARNING, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RayUnavailableError(f"cannot reach the Ray cluster at {settings.address!r}: {exc}") from exc
        self._ray = ray
        self.gcs_address = ray.get_runtime_context().gcs_address
        # The Starlette app is the only ingress: no Ray Serve HTTP proxy.
        serve.start(proxy_location="Disabled")
        replica = serve.deployment(EngineReplica).options(**settings.deployment_options())
        try:
            handle = serve.run(
                replica.bind(self._engine_options),
                name=settings.app_name,
                route_prefix=None,
                logging_config={"log_level": "WARNING", "enable_access_log": False},
            )
        except Exception as exc:  # e.g. a replica that cannot load the model on its node
            raise RayUnavailableError(f"deploying the engine replicas failed: {exc}") from exc
        self._deployed = True
        threading.Thread(target=self._poll_status, name="chunkwise-ray-status", daemon=True).start()
        self._engine = RayEngine(handle, validator, load=DeploymentLoad(replica_states=lambda: self._replica_states))
        return self._engine

    def _poll_status(self) -> None:
        from ray import serve

        while not self._stop_polling.is_set():
            try:
                application = serve.status().applications.get(self.settings.app_name)
                if application is not None:
                    deployment = application.deployments[DEPLOYMENT_NAME]
                    self._replica_states = {
                        str(getattr(state, "value", state)): n for state, n in deployment.replica_states.items()
                    }
            except Exception as exc:  # a busy controller must not kill the poller
                logger.debug("serve.status() failed: %r", exc)
            self._stop_polling.wait(STATUS_POLL_INTERVAL)

    def scheduler(self, settings: ServerSettings) -> DeploymentAdmission:
        per_replica = self.settings.max_ongoing_requests
        return DeploymentAdmission(
            lambda: self.settings.most_replicas * per_replica, settings.queue_size, retry_after=settings.retry_after
        )

    def create_app(self, settings: ServerSettings) -> Starlette:
        """The chunkwise app over this deployment, with the deployment's metrics on ``/metrics``."""
        from ..server import create_app

        app = create_app(self.engine, settings, scheduler=self.scheduler(settings))
        app.state.metrics.registry.register(self.engine.load)
        return app

    def close(self) -> None:
        self._stop_polling.set()
        ray = self._ray
        if ray is None:
            return
        from ray import serve

        try:
            if self._started_cluster:
                serve.shutdown()
            elif self._deployed:
                serve.delete(self.settings.app_name)
        finally:
            # Stops a cluster this process started (replicas, controller and all); leaves a joined one running.
            ray.shutdown()
            self._ray = None

    def __enter__(self) -> RayDeployment:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
