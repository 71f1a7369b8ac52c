"""Shared fixtures: the packaged default model is loaded once per test session."""

import pytest


@pytest.fixture(scope="session")
def base_model():
    from helpers.models import load_model

    return load_model(device="cpu")
