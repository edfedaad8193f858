"""Fixtures for the DPRS tests; the problem builders live in dprs_problems.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from dprs_problems import Builder, densenet121_problem, random_problem, resnet50_problem

from codegen.dprs import Problem


@pytest.fixture
def builder() -> type[Builder]:
    return Builder


@pytest.fixture
def make_random() -> Callable[..., Problem]:
    return random_problem


@pytest.fixture
def make_resnet50() -> Callable[..., Problem]:
    return resnet50_problem


@pytest.fixture
def make_densenet121() -> Callable[..., Problem]:
    return densenet121_problem
