"""Parsing grammars in a child process, where a crash in llama.cpp's native parser costs one 400, not the server.

llama.cpp's GBNF parser is recursive C++; a pathological grammar can overflow its stack, and a segfault
cannot be caught in Python. So each grammar is first parsed once by a long-lived helper process (started
on first use, restarted after it dies) and the verdict is cached by grammar text. The engine builds its
own sampler from the same text only after the helper has parsed it, so the in-process parse sees nothing
new. The helper needs no model: llama.cpp only consults the vocabulary for ``<[token]>`` references, which
the grammars built here never use.
"""

from __future__ import annotations

import atexit
import os
import select
import struct
import subprocess
import sys
import threading
from collections import OrderedDict
from typing import IO

__all__ = ["GrammarChecker", "default_checker", "main"]

_LENGTH = struct.Struct("!I")
_OK, _REJECTED = b"1", b"0"


class GrammarChecker:
    """Answers "does llama.cpp parse this grammar?" from a child process; thread-safe."""

    def __init__(self, *, timeout: float = 20.0, cache_size: int = 256) -> None:
        self._timeout = timeout
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._verdicts: OrderedDict[str, str | None] = OrderedDict()
        self._exit_hook = False

    def problem(self, grammar: str) -> str | None:
        """None if the grammar parses; otherwise why not, in words for the client."""
        with self._lock:
            if grammar in self._verdicts:
                self._verdicts.move_to_end(grammar)
                return self._verdicts[grammar]
            verdict = self._ask(grammar.encode())
            self._verdicts[grammar] = verdict
            if len(self._verdicts) > self._cache_size:
                self._verdicts.popitem(last=False)
            return verdict

    def _ask(self, grammar: bytes) -> str | None:
        process = self._running()
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(_LENGTH.pack(len(grammar)) + grammar)
            process.stdin.flush()
            ready, _, _ = select.select([process.stdout], [], [], self._timeout)
            answer = os.read(process.stdout.fileno(), 1) if ready else None
        except OSError:
            answer = b""
        if answer == _OK:
            return None
        if answer == _REJECTED:
            return "llama.cpp could not parse the grammar built from this request"
        self._stop()
        if answer is None:
            return "the grammar built from this request is too complex to parse in time"
        return "the grammar built from this request crashed llama.cpp's grammar parser"

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-c", "from chunkwise.engine._grammar_check import main; main()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # llama.cpp logs each parse error there
            )
            if not self._exit_hook:
                # Registered with the first helper process, not at import: importing the engine must not
                # change what the interpreter does at exit.
                atexit.register(self.close)
                self._exit_hook = True
        return self._process

    def _stop(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    stream.close()
            self._process = None

    def close(self) -> None:
        with self._lock:
            self._stop()
            if self._exit_hook:
                atexit.unregister(self.close)
                self._exit_hook = False


#: The engine's checker; it starts its helper process (and its exit hook) on the first grammar.
default_checker = GrammarChecker()


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


def main() -> None:
    """The child: read length-prefixed grammars from stdin, answer one byte each; exit at EOF."""
    import llama_cpp

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (header := _read_exactly(stdin, _LENGTH.size)) is not None:
        grammar = _read_exactly(stdin, _LENGTH.unpack(header)[0])
        if grammar is None:
            return
        sampler = llama_cpp.llama_sampler_init_grammar(None, grammar, b"root")
        if sampler:
            llama_cpp.llama_sampler_free(sampler)
        stdout.write(_OK if sampler else _REJECTED)
        stdout.flush()
