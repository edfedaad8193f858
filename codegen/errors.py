"""Errors a user can act on. The CLI prints their message without a traceback."""

from __future__ import annotations


class NeurogenError(Exception):
    """Base class: a user mistake or an environment problem, with a message that says what to do."""


class ModelError(NeurogenError):
    """The model file cannot be read or converted."""


class UnsupportedOpsError(ModelError):
    """The model uses operators that have no converter. Lists every one of them."""

    def __init__(self, path: str, unsupported: dict[str, list[str]]):
        self.unsupported = unsupported
        lines = [f"{path}: {len(unsupported)} unsupported operator type(s):"]
        for op_type in sorted(unsupported):
            nodes = unsupported[op_type]
            more = f" and {len(nodes) - 3} more" if len(nodes) > 3 else ""
            lines.append(f"  {op_type}: node {', '.join(repr(n) for n in nodes[:3])}{more}")
        lines.append("Remove or replace these operators, or open an issue asking for them.")
        super().__init__("\n".join(lines))


class GraphError(NeurogenError):
    """The graph breaks an invariant (shapes, names, order)."""


class RoutineError(NeurogenError):
    """No routine can implement a layer."""


class OutputError(NeurogenError):
    """The output folder cannot be written."""


class BuildError(NeurogenError):
    """The C toolchain failed on a generated project."""


class TargetError(NeurogenError):
    """A target description is missing or malformed."""


class NoRunnerError(TargetError):
    """Tuning needs to run benchmark programs on a target that cannot run any (bare metal, a cross
    compiler without an emulator or device)."""
