"""The architecture's rules, checked where they can break.

* import-linter's contracts in pyproject.toml fail on a forbidden import: each case below copies the real
  sources, adds one import the rules forbid, and runs ``lint-imports`` with the project's own config.
* Importing the server, engine or gateway loads no client code and leaves the process as it was: no
  environment variable, exit hook or logger filter appears before the object that needs it is built.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def contract_names() -> list[str]:
    with PYPROJECT.open("rb") as file:
        return [contract["name"] for contract in tomllib.load(file)["tool"]["importlinter"]["contracts"]]


LAYERS, PRIVATE_MODULES = contract_names()


def lint_imports(source_root: Path) -> tuple[int, str]:
    """Run lint-imports with the project's config on the ``chunkwise`` package found in ``source_root``."""
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache", str(PYPROJECT)],
        cwd=source_root,
        env={**os.environ, "PYTHONPATH": str(source_root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Its report wraps long lines; contract names are compared with the wrapping undone.
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def test_the_sources_keep_every_contract() -> None:
    returncode, report = lint_imports(ROOT / "src")
    assert returncode == 0, report
    assert f"{LAYERS} KEPT" in report and f"{PRIVATE_MODULES} KEPT" in report


@pytest.mark.parametrize(
    ("module", "forbidden", "contract", "named"),
    [
        # Siblings on one layer: the server never imports the client.
        ("server/_routes.py", "from ..client import Client", LAYERS, "chunkwise.server._routes -> chunkwise.client"),
        # Downwards only: the engine never imports the server.
        ("engine/_llama.py", "from ..server import create_app", LAYERS, "chunkwise.engine._llama -> chunkwise.server"),
        # A package still to come already has its place: the edge sits below the server.
        ("edge/__init__.py", "from ..server import create_app", LAYERS, "chunkwise.edge -> chunkwise.server"),
        # Only a package's __init__ crosses its line.
        (
            "server/_app.py",
            "from ..engine._llama import LlamaCppEngine",
            PRIVATE_MODULES,
            "chunkwise.server._app -> chunkwise.engine._llama",
        ),
    ],
)
def test_lint_imports_fails_on_a_forbidden_import(
    tmp_path: Path, module: str, forbidden: str, contract: str, named: str
) -> None:
    shutil.copytree(ROOT / "src" / "chunkwise", tmp_path / "chunkwise", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "chunkwise" / module
    target.parent.mkdir(exist_ok=True)
    with target.open("a") as file:
        file.write(f"\n{forbidden}  # noqa: E402, F401\n")
    returncode, report = lint_imports(tmp_path)
    assert returncode != 0, report
    assert f"{contract} BROKEN" in report, report
    assert named in report, report


def run_python(script: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_importing_the_server_engine_and_gateway_loads_no_client_and_changes_nothing() -> None:
    run_python(
        """
        import atexit, logging, os, sys

        hooks = []
        register = atexit.register

        def recording(function, *args, **kwargs):
            hooks.append(getattr(function, "__module__", "") or "")
            return register(function, *args, **kwargs)

        atexit.register = recording
        environment = dict(os.environ)
        import chunkwise.server, chunkwise.engine, chunkwise.gateway

        assert "chunkwise.client" not in sys.modules, "the client was imported"
        changed = set(environment.items()) ^ set(os.environ.items())
        assert not changed, f"the environment changed: {sorted(changed)}"
        ours = [module for module in hooks if module.startswith("chunkwise")]
        assert not ours, f"exit hooks registered at import: {ours}"
        assert not logging.getLogger("uvicorn.error").filters, "a filter was added to uvicorn's logger"
        """
    )


def test_the_root_exports_load_on_first_use() -> None:
    run_python(
        """
        import sys
        import chunkwise

        assert "chunkwise.client" not in sys.modules and chunkwise.__version__
        from chunkwise import Client, ChunkwiseError

        assert "chunkwise.client" in sys.modules and Client.__module__.startswith("chunkwise.client")
        assert issubclass(chunkwise.BadRequestError, ChunkwiseError)
        assert set(chunkwise.__all__) <= set(dir(chunkwise))
        try:
            chunkwise.NoSuchName
        except AttributeError as exc:
            assert "NoSuchName" in str(exc)
        else:
            raise AssertionError("an unknown name did not raise AttributeError")
        """
    )


def test_the_server_filters_uvicorns_logger_only_while_an_app_runs() -> None:
    # create_app only reads the engine's id and capabilities here, so a stand-in does instead of the model.
    run_python(
        """
        import logging
        from starlette.testclient import TestClient
        from chunkwise.server import create_app

        class IdleEngine:
            model_id = "idle"
            context_length = 16

            def prepare_chat(self, request, *, request_id, created):
                raise NotImplementedError

            def prepare_completion(self, request, *, request_id, created):
                raise NotImplementedError

            def close(self):
                pass

        uvicorn_logger = logging.getLogger("uvicorn.error")
        first, second = create_app(IdleEngine()), create_app(IdleEngine())
        assert not uvicorn_logger.filters, "create_app added a filter"
        with TestClient(first):
            assert len(uvicorn_logger.filters) == 1
            with TestClient(second):
                assert len(uvicorn_logger.filters) == 1
            assert len(uvicorn_logger.filters) == 1, "the second app's end removed the first app's filter"
        assert not uvicorn_logger.filters, "the filter outlived the app"
        """
    )
