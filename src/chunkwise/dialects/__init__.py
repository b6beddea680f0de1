"""Two more dialects beside chat completions: OpenAI's Responses API and Anthropic's Messages API.

Pure (no I/O) and shared by the server, the gateway and the client: wire types for each dialect's request,
final object, stream events and errors; request translation to the one chat request the engine serves;
incremental translation of chat chunks to each dialect's events and back; reassembly of each dialect's events
into its final object; and the SSE codec. One stream of engine chunks feeds all three dialects::

    writer = ChatToResponses(new_response(request, response_id=..., created_at=..., model=...))
    for chunk in engine_chunks:
        for event in writer.feed(chunk):
            send(encode_dialect_event(event))
    for event in writer.finish():
        send(encode_dialect_event(event))
"""

from __future__ import annotations

from . import (
    _errors,
    _messages_final,
    _messages_request,
    _messages_stream,
    _messages_types,
    _responses_final,
    _responses_request,
    _responses_stream,
    _responses_types,
    _sse,
)
from ._errors import *
from ._messages_final import *
from ._messages_request import *
from ._messages_stream import *
from ._messages_types import *
from ._responses_final import *
from ._responses_request import *
from ._responses_stream import *
from ._responses_types import *
from ._sse import *

# Each module lists its own exports; the package's list is their union, so no name is listed twice.
__all__ = sorted(
    [
        *_errors.__all__,
        *_messages_final.__all__,
        *_messages_request.__all__,
        *_messages_stream.__all__,
        *_messages_types.__all__,
        *_responses_final.__all__,
        *_responses_request.__all__,
        *_responses_stream.__all__,
        *_responses_types.__all__,
        *_sse.__all__,
    ]
)
