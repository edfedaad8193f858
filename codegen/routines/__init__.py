"""Routines: how each layer kind is computed. Importing this package fills the registry."""

from . import blocked, conv, data, elementwise, gemm, normalization, pool, winograd  # noqa: F401  (declarations)
from .registry import (  # noqa: I001  (the declarations above must run first)
    REGISTRY,
    Argument,
    Routine,
    RoutineInstance,
    by_name,
    candidates,
    reference_routine,
    register,
)

__all__ = ["REGISTRY", "Argument", "Routine", "RoutineInstance", "by_name", "candidates",
           "reference_routine", "register"]

from .. import adapt  # noqa: E402,F401  (adapt routines are registry entries too)
