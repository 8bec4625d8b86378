"""Shared fixtures: the tiny offline model, the shared data directory, the real SmolLM2 (slow tests)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny_model import build_tiny_model

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random-weight Llama with a char-level tokenizer and chat template (no downloads)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The directory of real math data (CURRICULUM_DATA_DIR, else ../shared/data beside the repo)."""
    candidate = Path(os.environ.get("CURRICULUM_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    if not (candidate / "train").is_dir():
        pytest.skip(f"real data directory not found at {candidate}; set CURRICULUM_DATA_DIR")
    return candidate


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct, resolved from its PyPI wheel and cached (slow tests only)."""
    from curriculum.models import resolve_model

    return Path(resolve_model("smollm2-135m"))
