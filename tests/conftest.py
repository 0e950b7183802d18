"""Shared test fixtures and hypothesis settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "deltaflow",
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("deltaflow")


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the repository (or $DELTAFLOW_SHARED_DATA), if present."""
    env = os.environ.get("DELTAFLOW_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("the shared MNIST files (../shared/data) are not present")
    return path
