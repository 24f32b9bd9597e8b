"""Tests of the real ImageNet weights run only where the package that ships them is installed."""

import importlib.util

import pytest

from tinyeffnet.pretrained import AVAILABLE


def with_weights(name):
    """``name`` as a test parameter, skipped when the package that ships its weights is not installed."""
    weights = AVAILABLE[name]
    return pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(weights.package) is None,
                                                       reason=f"{weights.pip_name} is not installed"))


WITH_WEIGHTS = [with_weights(name) for name in AVAILABLE]   # one parameter per variant with published weights
