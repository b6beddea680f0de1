"""Real servers with a real model, run as subprocesses on loopback for the duration of a test module."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def subprocess_server(args: list[str], *, port: int, health_path: str, startup: float = 120) -> Iterator[str]:
    """Start ``python <args>``, wait until ``health_path`` answers 200, yield its root URL, then stop it."""
    env = {key: value for key, value in os.environ.items() if not key.endswith("_API_KEY")}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + startup
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"{args[:2]} exited with {process.returncode}:\n{log.read().decode()[-3000:]}")
                try:
                    if httpx.get(url + health_path, timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{args[:2]} did not become healthy within {startup} s")
                time.sleep(0.2)
            yield url
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
