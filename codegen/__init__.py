"""neurogen: an ahead-of-time compiler from trained neural networks to standalone C."""

__version__ = "0.1.0"

from .compiler import compile_model, import_model  # noqa: E402
from .errors import NeurogenError  # noqa: E402
from .runtime import CompiledModel, load  # noqa: E402

__all__ = ["CompiledModel", "NeurogenError", "__version__", "compile_model", "import_model", "load"]
