"""Test configuration shared by every test file (and by nbval's notebook runs).

Quick mode (KRYPTON_QUICK=1) shrinks sizes and sweeps in notebooks and benchmarks; the code
paths are the same. Hypothesis gets a CI profile: derandomized, so a CI run is repeatable,
and with no deadline, since the shared 2-core machines are noisy.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("KRYPTON_QUICK", "1")
# Tests see the formula defaults, not a tuning saved on this machine by the autotuner.
os.environ["KRYPTON_CONFIG"] = os.path.join(os.path.dirname(__file__), "no-tuning-in-tests.json")

from krypton import seam  # noqa: E402  (after the environment it reads is set)

settings.register_profile(
    "krypton", deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long", deadline=None, max_examples=5000, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("KRYPTON_HYPOTHESIS_PROFILE", "krypton"))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private, empty kernel cache for one test."""
    monkeypatch.setenv("KRYPTON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(seam, "_loaded", {})
    return tmp_path / "cache"
