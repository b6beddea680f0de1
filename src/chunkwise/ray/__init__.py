"""Scale-out: ``chunkwise serve --ray`` runs the engine as Ray Serve replicas across a Ray cluster.

The chunkwise Starlette app stays the only HTTP server (every endpoint, error, metric, auth and limit is the
plain server's); its engine becomes a :class:`RayEngine` that streams each request from one replica through
a Ray Serve ``DeploymentHandle``. Each replica is one :class:`EngineReplica`: one engine with its own
batching. Importing this package does not import Ray; :meth:`RayDeployment.start` does, and names the
``chunkwise[ray]`` extra when it is missing.

Example::

    settings = RayDeploymentSettings(address="local", replicas=2)
    with RayDeployment(settings, {"n_threads": 1}) as deployment, LlamaCppEngine(n_threads=1) as validator:
        deployment.start(validator)
        uvicorn.run(deployment.create_app(ServerSettings()))
"""

from __future__ import annotations

from ._cluster import RayDeployment, RayDeploymentSettings, RayUnavailableError
from ._engine import RayEngine, RayGeneration
from ._replica import EngineReplica

__all__ = [
    "EngineReplica",
    "RayDeployment",
    "RayDeploymentSettings",
    "RayEngine",
    "RayGeneration",
    "RayUnavailableError",
]
