"""A real Ray cluster for the ``chunkwise serve --ray`` tests: started once per module, on this machine.

``chunkwise serve --ray local`` runs as a subprocess, exactly as a user starts it: it starts a private Ray
cluster (no dashboard), deploys two replicas with one llama.cpp thread and half a logical CPU each (so two
fixed and two autoscaled replicas fit a 2-core machine), and serves HTTP on 127.0.0.1 only. A second
server (the autoscaling test) joins the same cluster by its GCS address under another application name.
Ray's own processes listen on the node's address, as Ray always does (its token authentication guards
them); nothing here opens a port beyond that.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

pytest.importorskip("ray.serve", reason="needs the chunkwise[ray] extra (scripts/setup --test installs it)")

from ..server.conftest import read_metric

N_CTX = 1024
#: Starting a cluster and two replicas takes ~10-20 s on a quiet machine; on a busy one much more.
START_TIMEOUT = 180.0
SERVING = re.compile(r"chunkwise is serving \S+ at (http://127\.0\.0\.1:\d+)")
CLUSTER = re.compile(r"on the cluster at (\S+)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.timeout(240))
            item.add_marker(pytest.mark.engine)


@dataclass
class RayServer:
    """One ``chunkwise serve --ray`` process and what it printed."""

    process: subprocess.Popen[str]
    url: str = ""
    cluster: str = ""
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=30).text

    def metric(self, name: str, **labels: str) -> float:
        return read_metric(self.metrics(), name, **labels)

    def replica_samples(self, name: str) -> dict[str, float]:
        """``{replica: value}`` for one per-replica metric."""
        found: dict[str, float] = {}
        for line in self.metrics().splitlines():
            match = re.fullmatch(rf'{name}\{{replica="([^"]+)"\}} (\S+)', line)
            if match:
                found[match.group(1)] = float(match.group(2))
        return found

    def replica_pid(self, replica: str) -> int:
        match = re.search(
            rf'chunkwise_ray_replica_info\{{node="[^"]*",pid="(\d+)",replica="{replica}"\}}', self.metrics()
        )
        assert match, self.metrics()
        return int(match.group(1))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        if self.reader is not None:
            self.reader.join(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_server(*args: str, env: dict[str, str] | None = None) -> RayServer:
    """Start ``chunkwise serve`` with ``args`` and wait until it serves; the caller stops it."""
    command = [sys.executable, "-m", "chunkwise", "serve", "--port", "0", "--n-ctx", str(N_CTX), "--n-threads", "1"]
    command += ["--replica-cpus", "0.5", "--no-access-log", "--log-level", "warning", *args]
    environment = {**os.environ, "COLUMNS": "250", "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    server = RayServer(process)
    ready = threading.Event()

    def read_output() -> None:
        # Drained to the end, so that Ray's log lines never fill the pipe and block the server.
        assert process.stdout is not None
        for line in process.stdout:
            server.output.append(line)
            if match := CLUSTER.search(line):
                server.cluster = match.group(1)
            if match := SERVING.search(line):
                server.url = match.group(1)
                ready.set()
        ready.set()

    server.reader = threading.Thread(target=read_output, name="chunkwise-serve-output", daemon=True)
    server.reader.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not ready.wait(0.5) and time.monotonic() < deadline:
        pass
    if not server.url:
        server.stop()
        pytest.fail("chunkwise serve --ray did not start:\n" + "".join(server.output[-60:]))
    return server


@pytest.fixture(scope="module")
def ray_server() -> Iterator[RayServer]:
    """Two fixed replicas on a private local cluster (which stops with the server)."""
    server = start_server("--ray", "local", "--replicas", "2")
    try:
        yield server
    finally:
        server.stop()
        # Shown with the last test's report when it fails: what the server and Ray said.
        print("".join(server.output[-80:]))


def eventually(condition: object, timeout: float) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.25)
    return bool(condition())
