"""The OpenAI/Atoma-compatible HTTP server: ``create_app(engine, settings)`` returns a Starlette app.

Run it with any ASGI server; ``chunkwise serve`` runs it under uvicorn with the embedded llama.cpp engine.
"""

from __future__ import annotations

from ._admission import Admission, Ticket
from ._app import create_app
from ._errors import QueueFullError
from ._join import GatewayMembership
from ._keys import load_node_key, load_signer
from ._protocol import h11_protocol
from ._scheduler import QueuedAdmission, Scheduler
from ._settings import ServerSettings

__all__ = [
    "Admission",
    "GatewayMembership",
    "QueueFullError",
    "QueuedAdmission",
    "Scheduler",
    "ServerSettings",
    "Ticket",
    "create_app",
    "h11_protocol",
    "load_node_key",
    "load_signer",
]
