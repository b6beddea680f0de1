"""Stored Responses: what ``GET``/``DELETE /v1/responses/{id}`` and ``previous_response_id`` read, in both apps.

Each stored response keeps the conversation that led to it (its input items, the earlier turns included)
beside the ``response`` itself, so a follow-up names only its own new input. The store is bounded: the
least recently used response goes when a new one would pass ``capacity`` (or, in memory, a byte budget).
:class:`MemoryResponseStore` is the default; :class:`SQLiteResponseStore` keeps them in a file across
restarts. Both are called on the event loop: one row per answer, written as the answer ends.
"""

from __future__ import annotations

import collections
import sqlite3
import threading
from typing import Any, Protocol

import msgspec

from .._errors import BadRequestError, NotFoundError
from ..dialects import ResponseObject, ResponsesRequest, response_id_of_item

__all__ = [
    "MemoryResponseStore",
    "ResponseStore",
    "SQLiteResponseStore",
    "StoredResponse",
    "conversation",
    "open_response_store",
    "stored_response",
]


#: What the in-memory store holds at most, whatever its count.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


class StoredResponse(msgspec.Struct, kw_only=True, gc=False):
    response: ResponseObject
    #: The input items that produced ``response``, the stored turns before it included.
    input: list[Any]
    #: Who may read it (the gateway's key id); None: anyone who may call the server.
    owner: str | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(StoredResponse)


class ResponseStore(Protocol):
    def get(self, response_id: str) -> StoredResponse | None: ...

    def put(self, stored: StoredResponse) -> None: ...

    def delete(self, response_id: str) -> bool: ...

    def close(self) -> None: ...


class MemoryResponseStore:
    """The last ``capacity`` responses in this process, and no more than ``max_bytes`` of them (as JSON): a
    response carries its whole conversation, so a count alone would not bound the memory."""

    def __init__(self, capacity: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._size = 0
        self._entries: collections.OrderedDict[str, bytes] = collections.OrderedDict()

    def get(self, response_id: str) -> StoredResponse | None:
        data = self._entries.get(response_id)
        if data is None:
            return None
        self._entries.move_to_end(response_id)
        return _decoder.decode(data)

    def put(self, stored: StoredResponse) -> None:
        data = _encoder.encode(stored)
        self.delete(stored.response.id)
        self._entries[stored.response.id] = data
        self._size += len(data)
        while len(self._entries) > self._capacity or (self._size > self._max_bytes and len(self._entries) > 1):
            _, dropped = self._entries.popitem(last=False)
            self._size -= len(dropped)

    def delete(self, response_id: str) -> bool:
        data = self._entries.pop(response_id, None)
        if data is None:
            return False
        self._size -= len(data)
        return True

    def close(self) -> None:
        self._entries.clear()
        self._size = 0


class SQLiteResponseStore:
    """The last ``capacity`` responses, in a SQLite file (created if missing)."""

    def __init__(self, path: str, capacity: int) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, used INTEGER NOT NULL, body BLOB NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS responses_used ON responses (used)")
        row = self._db.execute("SELECT COALESCE(MAX(used), 0) FROM responses").fetchone()
        self._clock: int = row[0]

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def get(self, response_id: str) -> StoredResponse | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM responses WHERE id = ?", (response_id,)).fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE responses SET used = ? WHERE id = ?", (self._tick(), response_id))
        return _decoder.decode(row[0])

    def put(self, stored: StoredResponse) -> None:
        body = _encoder.encode(stored)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (id, used, body) VALUES (?, ?, ?)",
                (stored.response.id, self._tick(), body),
            )
            self._db.execute(
                "DELETE FROM responses WHERE id NOT IN (SELECT id FROM responses ORDER BY used DESC LIMIT ?)",
                (self._capacity,),
            )

    def delete(self, response_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM responses WHERE id = ?", (response_id,)).rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_response_store(path: str | None, capacity: int) -> ResponseStore:
    return MemoryResponseStore(capacity) if path is None else SQLiteResponseStore(path, capacity)


def conversation(request: ResponsesRequest, store: ResponseStore, owner: str | None = None) -> list[Any]:
    """The request's input items, after the stored turns that ``previous_response_id`` names (404 if none, or
    if ``owner`` did not store it), each ``item_reference`` replaced by the stored output item it names."""
    text = request.input
    items: list[Any] = [{"role": "user", "content": text}] if isinstance(text, str) else text or []
    items = [_dereferenced(item, f"input[{position}]", store, owner) for position, item in enumerate(items)]
    previous = request.previous_response_id
    if previous is None:
        return items
    stored = store.get(previous)
    if stored is None or stored.owner != owner:
        raise NotFoundError(f"Previous response with id '{previous}' not found.", param="previous_response_id")
    return [*stored.input, *msgspec.to_builtins(stored.response.output), *items]


def _dereferenced(item: Any, param: str, store: ResponseStore, owner: str | None) -> Any:
    # Clients that let the server keep their turns (the Vercel AI SDK's OpenAI provider, by default) send an
    # earlier answer's items back as references to them.
    if not isinstance(item, dict) or item.get("type") != "item_reference":
        return item
    item_id = item.get("id")
    if not isinstance(item_id, str):
        raise BadRequestError("an item_reference needs the `id` of a stored item", param=f"{param}.id")
    response_id = response_id_of_item(item_id)
    stored = None if response_id is None else store.get(response_id)
    if stored is not None and stored.owner == owner:
        for output in stored.response.output:
            if output.id == item_id:
                return msgspec.to_builtins(output)
    raise NotFoundError(f"Item with id '{item_id}' not found.", param=f"{param}.id")


def stored_response(store: ResponseStore, response_id: str, owner: str | None = None) -> StoredResponse:
    """The stored response ``response_id``, or a 404 (also when ``owner`` did not store it)."""
    stored = store.get(response_id)
    if stored is None or stored.owner != owner:
        raise NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")
    return stored
