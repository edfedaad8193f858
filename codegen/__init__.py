"""neurogen: an ahead-of-time compiler from trained neural networks to standalone C."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public API is imported on first use: `neurogen --help` and every `import codegen.x` pay for
# this package's __init__, and onnx/numpy/jinja2 take a second or more to import.
_LAZY = {"compile_model": "compiler", "import_model": "compiler", "NeurogenError": "errors",
         "CompiledModel": "runtime", "load": "runtime"}

if TYPE_CHECKING:
    from .compiler import compile_model, import_model
    from .errors import NeurogenError
    from .runtime import CompiledModel, load

__all__ = ["CompiledModel", "NeurogenError", "__version__", "compile_model", "import_model", "load"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        # `import codegen; codegen.emit.x` worked when this file imported everything: keep it working.
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'codegen' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
