"""The ``engine`` marker is reliable: ``-m "not engine"`` runs no test that loads the model (see tests/conftest.py)."""

from __future__ import annotations

import pytest

from chunkwise.engine import LlamaCppEngine


def test_a_test_without_the_marker_that_loads_the_model_fails_before_loading_it() -> None:
    with pytest.raises(pytest.fail.Exception, match="is not marked `engine`"):
        LlamaCppEngine(n_ctx=256, n_threads=1)
