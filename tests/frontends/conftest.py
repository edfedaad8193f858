"""Fixtures of the frontend tests: TensorFlow (a guard only: CI installs it)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def tf_modules():
    tf = pytest.importorskip("tensorflow")
    import keras

    return tf, keras
