"""Parsing grammars in child processes, where a crash in llama.cpp's native parser costs one 400, not the server.

llama.cpp's GBNF parser is recursive C++; a pathological grammar can overflow its stack, and a segfault
cannot be caught in Python. So each grammar is first parsed once by a long-lived helper process (started
on first use, restarted after it dies) and the verdict is cached by grammar text. The engine builds its
own sampler from the same text only after a helper has parsed it, so the in-process parse sees nothing
new. The helpers need no model: llama.cpp only consults the vocabulary for ``<[token]>`` references, which
the grammars built here never use.

Each parse has a time budget; a grammar past it is a 400 that names the budget, and its helper is
replaced. There is a small pool of helpers, each serving one parse at a time, so one slow grammar delays
no other request's grammar (a cached verdict needs no helper at all).
"""

from __future__ import annotations

import atexit
import os
import queue
import select
import struct
import subprocess
import sys
import threading
from collections import OrderedDict
from typing import IO

__all__ = ["GrammarChecker", "default_checker", "main"]

_LENGTH = struct.Struct("!I")
_OK, _REJECTED, _READY = b"1", b"0", b"R"
#: Seconds a new helper may take to start, not counted in any grammar's budget.
_START_TIMEOUT = 60.0


class _Helper:
    """One child process; used by one thread at a time (the pool hands it out)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._exit_hook = False

    def ask(self, grammar: bytes, timeout: float) -> bytes | None:
        """The child's one-byte verdict, b"" if it died, None past ``timeout`` (then it is stopped)."""
        try:
            process = self._running()
        except OSError:
            return b""
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(_LENGTH.pack(len(grammar)) + grammar)
            process.stdin.flush()
            ready, _, _ = select.select([process.stdout], [], [], timeout)
            answer = os.read(process.stdout.fileno(), 1) if ready else None
        except OSError:
            answer = b""
        if answer not in (_OK, _REJECTED):
            self.stop()
        return answer

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self.stop()
            process = subprocess.Popen(
                [sys.executable, "-c", "from chunkwise.engine._grammar_check import main; main()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # llama.cpp logs each parse error there
            )
            self._process = process
            if not self._exit_hook:
                # Registered with the first helper process, not at import: importing the engine must not
                # change what the interpreter does at exit.
                atexit.register(self.stop)
                self._exit_hook = True
            # The budget is for parsing: wait for the child to start (an interpreter and llama.cpp) first.
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], _START_TIMEOUT)
            if not ready or os.read(process.stdout.fileno(), 1) != _READY:
                self.stop()
                raise OSError("the grammar helper did not start")
        return self._process

    def stop(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    stream.close()
            self._process = None


class GrammarChecker:
    """Answers "does llama.cpp parse this grammar within ``timeout`` seconds?" from child processes.

    Thread-safe; up to ``helpers`` grammars are parsed at once, each in its own process.
    """

    def __init__(self, *, timeout: float = 5.0, cache_size: int = 256, helpers: int = 4) -> None:
        if helpers < 1:
            raise ValueError(f"helpers must be >= 1, not {helpers}")
        self._timeout = timeout
        self._cache_size = cache_size
        self._lock = threading.Lock()  # guards the verdicts only; never held during a parse
        self._verdicts: OrderedDict[str, str | None] = OrderedDict()
        self._all = [_Helper() for _ in range(helpers)]
        self._idle: queue.SimpleQueue[_Helper] = queue.SimpleQueue()
        for helper in self._all:
            self._idle.put(helper)

    def problem(self, grammar: str) -> str | None:
        """None if the grammar parses; otherwise why not, in words for the client."""
        with self._lock:
            if grammar in self._verdicts:
                self._verdicts.move_to_end(grammar)
                return self._verdicts[grammar]
        helper = self._idle.get()
        try:
            answer = helper.ask(grammar.encode(), self._timeout)
        finally:
            self._idle.put(helper)
        verdict = self._verdict(answer)
        with self._lock:
            self._verdicts[grammar] = verdict
            if len(self._verdicts) > self._cache_size:
                self._verdicts.popitem(last=False)
        return verdict

    def _verdict(self, answer: bytes | None) -> str | None:
        if answer == _OK:
            return None
        if answer == _REJECTED:
            return "llama.cpp could not parse the grammar built from this request"
        if answer is None:
            return f"the grammar built from this request is over budget: it took more than {self._timeout:g} s to parse"
        return "the grammar built from this request crashed llama.cpp's grammar parser"

    def close(self) -> None:
        """Stop the helpers (idle ones now; a new request would start them again)."""
        for helper in self._all:
            helper.stop()


#: The engine's checker; it starts its helper processes (and their exit hooks) on the first grammars.
default_checker = GrammarChecker()


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


def main() -> None:
    """The child: read length-prefixed grammars from stdin, answer one byte each; exit at EOF."""
    import llama_cpp

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(_READY)
    stdout.flush()
    while (header := _read_exactly(stdin, _LENGTH.size)) is not None:
        grammar = _read_exactly(stdin, _LENGTH.unpack(header)[0])
        if grammar is None:
            return
        sampler = llama_cpp.llama_sampler_init_grammar(None, grammar, b"root")
        if sampler:
            llama_cpp.llama_sampler_free(sampler)
        stdout.write(_OK if sampler else _REJECTED)
        stdout.flush()
