"""Wire types for the chat-completions API, as msgspec Structs.

Decoding is tolerant: unknown fields are ignored and fields that real servers leave out get defaults.
Encoding omits fields that were never set, except those the wire always carries (``object``, token
counts, ``choices``). Decode with :func:`msgspec.json.decode` (``type=ChatCompletionChunk``) or the
typed decoders here, which are built once and reused.
"""

from __future__ import annotations

import msgspec

from . import _chunk, _common, _completion, _embedding, _errors, _models, _request, _text_completion, _tokenize
from ._chunk import *
from ._common import *
from ._completion import *
from ._embedding import *
from ._errors import *
from ._models import *
from ._request import *
from ._text_completion import *
from ._tokenize import *

# Each module lists its own exports; the package's are their union and the codec helpers below.
__all__ = sorted(
    [
        *_chunk.__all__,
        *_common.__all__,
        *_completion.__all__,
        *_embedding.__all__,
        *_errors.__all__,
        *_models.__all__,
        *_request.__all__,
        *_text_completion.__all__,
        *_tokenize.__all__,
        "chunk_decoder",
        "completion_decoder",
        "encode",
    ]
)

#: Reusable typed decoders (msgspec's advice: build once, reuse on the hot path).
chunk_decoder: msgspec.json.Decoder[ChatCompletionChunk] = msgspec.json.Decoder(ChatCompletionChunk)
completion_decoder: msgspec.json.Decoder[ChatCompletion] = msgspec.json.Decoder(ChatCompletion)

_encoder = msgspec.json.Encoder()


def encode(value: msgspec.Struct) -> bytes:
    """Compact JSON for any wire type, with unset fields left out."""
    return _encoder.encode(value)
