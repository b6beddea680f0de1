"""Running a benchmark's contenders, shared by the bench scripts: work on threads at once, servers stopped."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["at_once", "stop"]


def at_once(count: int, work: Callable[[int], None]) -> float:
    """Run ``work(0)`` … ``work(count - 1)`` on threads of their own; seconds until the last one returned."""
    threads = [threading.Thread(target=work, args=(index,)) for index in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def stop(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGINT, the clean shutdown every server here handles, then SIGKILL after ``timeout`` seconds."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
