"""chunkwise: streaming chat completions in the OpenAI/Atoma wire format."""

from __future__ import annotations

from ._errors import ChunkwiseError, EngineError, EventTooLargeError, SSEError
from .types import ChatCompletion, ChatCompletionChunk

__version__ = "0.1.0"

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChunkwiseError",
    "EngineError",
    "EventTooLargeError",
    "SSEError",
    "__version__",
]
