"""Input shapes of every frontend: what the model declares, merged with `--input-shape`.

A declared dimension is an int (fixed) or a str (free: its symbolic name, "?" when it has none).
A free leading (batch) dimension compiles as 1; any other free dimension needs `--input-shape`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import ModelError
from ..ir import MAX_DIM

Dim = int | str
UNKNOWN = "?"


def _label(text: str) -> str:
    """A free dimension's name from the model file, made safe to print."""
    clean = "".join(c if c.isprintable() else "?" for c in text)[:32]
    return clean or UNKNOWN


def _shown(dims: Sequence[Dim]) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) else _label(d) for d in dims) + ")"


def _flag(name: str, dims: Sequence[Dim]) -> str:
    """The --input-shape option that would settle `dims`: free sizes as N (batch as 1)."""
    sizes = ["1" if i == 0 and not isinstance(d, int) else str(d) if isinstance(d, int) else "N"
             for i, d in enumerate(dims)]
    return f"--input-shape {name}={','.join(sizes)}"


def check_names(source: str, given: Mapping[str, tuple[int, ...]], inputs: Sequence[str]) -> None:
    """Every name in --input-shape must be a model input."""
    unknown = sorted(set(given) - set(inputs))
    if unknown:
        raise ModelError(f"{source}: --input-shape names {unknown}, but the model's inputs are {list(inputs)}")


def resolve(source: str, name: str, declared: Sequence[Dim] | None, given: tuple[int, ...] | None,
            order: str = "") -> tuple[int, ...]:
    """The shape input `name` compiles with. `declared` is None when the model gives no rank.

    `order` names the axis order --input-shape is read in, for the messages (" (NHWC)")."""
    for axis, d in enumerate(declared or ()):
        if isinstance(d, int) and not 0 < d <= MAX_DIM:
            why = ("empty tensors are not supported" if d == 0 else "sizes cannot be negative" if d < 0
                   else f"the C API holds sizes up to {MAX_DIM}")
            raise ModelError(f"{source}: input '{name}' {_shown(declared or ())} has size {d} at axis {axis}; {why}")
    if given is not None:
        given = tuple(int(d) for d in given)
        text = ",".join(map(str, given))
        if any(not 0 < d <= MAX_DIM for d in given):
            raise ModelError(f"{source}: --input-shape {name}={text}: sizes must be positive and at most {MAX_DIM}")
        if declared is None:
            return given
        if len(given) != len(declared):
            raise ModelError(f"{source}: --input-shape {name}={text} has rank {len(given)}, but input '{name}' "
                             f"has rank {len(declared)}: {_shown(declared)}{order}")
        for axis, (want, got) in enumerate(zip(declared, given)):
            if isinstance(want, int) and want != got:
                raise ModelError(f"{source}: --input-shape {name}={text} sets axis {axis} to {got}, but the "
                                 f"model fixes it at {want}: input '{name}' is {_shown(declared)}{order}")
        return given
    if declared is None:
        raise ModelError(f"{source}: input '{name}' has no shape; give one{order} with "
                         f"--input-shape {name}=D0,D1,...")
    free = [axis for axis, d in enumerate(declared) if not isinstance(d, int)]
    if free and free[0] == 0:
        free = free[1:]  # a free batch size compiles as 1
    if free:
        axes = ", ".join(f"axis {a} ('{_label(str(declared[a]))}')" for a in free)
        raise ModelError(f"{source}: input '{name}' {_shown(declared)} has a free size at {axes}; "
                         f"give its size{order} with {_flag(name, declared)}")
    return tuple(1 if not isinstance(d, int) else d for d in declared)
