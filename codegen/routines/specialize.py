"""Shapes as compile-time constants or as run-time arguments: the `shapes` routine parameter.

A routine that declares `shape_args` (context keys whose values are only loop bounds and index
arithmetic) gets the parameter `shapes` with the values "const" and "args". With "const" its
template sees numbers, as every template always has. With "args" it sees `CExpr` symbols instead:
they print as C identifiers (the names of `size_t` parameters), combine with `+ - * //` into C
expressions, and remember which of them the rendered code printed, so the function takes exactly
the arguments it uses. Instances of one routine whose other parameters and context agree then
render identical code, and the emitter keeps one function for all of them (smaller code, usually
a little slower: the compiler no longer knows the trip counts).

Templates opt in with three filters that leave constants as they were: `signed` where a value
meets a `ptrdiff_t` (`(ptrdiff_t)H` for a symbol), `unsigned` where a literal gets a `u` suffix,
and `cf` (a float literal, or `(float)S`). A template that tests a shape value (`{% if KH == 1 %}`,
`range(KH)`) cannot take it as an argument: comparing or iterating a symbol raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

SHAPES = "shapes"  # the routine parameter
SHAPE_MODES = ("const", "args")  # the first is the default (the reference instance's)

_ATOM, _PRODUCT, _SUM = 3, 2, 1  # C precedence levels of what CExpr builds


class CExpr:
    """A C expression over shape arguments, standing for a number a template would have printed."""

    __slots__ = ("text", "level", "names", "usage")

    def __init__(self, text: str, level: int, names: frozenset[str], usage: set[str]) -> None:
        self.text = text
        self.level = level
        self.names = names  # the arguments it reads
        self.usage = usage  # where printing it records them

    def __str__(self) -> str:
        self.usage.update(self.names)
        return self.text

    def __repr__(self) -> str:
        return f"CExpr({self.text!r})"

    def _combine(self, other: Any, op: str, level: int, reverse: bool = False) -> CExpr:
        other_expr = _operand(other, self.usage)
        left, right = (other_expr, self) if reverse else (self, other_expr)
        commutes = op in ("+", "*")
        lhs = left.text if left.level >= level else f"({left.text})"
        rhs = right.text if right.level > level or (commutes and right.level == level) else f"({right.text})"
        return CExpr(f"{lhs} {op} {rhs}", level, left.names | right.names, self.usage)

    def __add__(self, other: Any) -> CExpr:
        return self._combine(other, "+", _SUM)

    def __radd__(self, other: Any) -> CExpr:
        return self._combine(other, "+", _SUM, reverse=True)

    def __sub__(self, other: Any) -> CExpr:
        return self._combine(other, "-", _SUM)

    def __rsub__(self, other: Any) -> CExpr:
        return self._combine(other, "-", _SUM, reverse=True)

    def __mul__(self, other: Any) -> CExpr:
        return self._combine(other, "*", _PRODUCT)

    def __rmul__(self, other: Any) -> CExpr:
        return self._combine(other, "*", _PRODUCT, reverse=True)

    def __floordiv__(self, other: Any) -> CExpr:
        return self._combine(other, "/", _PRODUCT)

    def __rfloordiv__(self, other: Any) -> CExpr:
        return self._combine(other, "/", _PRODUCT, reverse=True)

    def __mod__(self, other: Any) -> CExpr:
        return self._combine(other, "%", _PRODUCT)

    def _refuse(self, *args: Any) -> Any:
        raise TypeError(f"shape argument '{self.text}' is only known at run time: the template cannot "
                        "compare, negate, divide exactly or iterate it (drop it from the routine's shape_args)")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse  # type: ignore[assignment]
    __bool__ = __neg__ = __truediv__ = __rtruediv__ = __iter__ = __index__ = __int__ = __float__ = _refuse
    __hash__ = None  # type: ignore[assignment]


def _operand(value: Any, usage: set[str]) -> CExpr:
    if isinstance(value, CExpr):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"a shape argument combines with non-negative whole numbers only, not {value!r}")
    return CExpr(str(value), _ATOM, frozenset(), usage)


class ShapeArgs:
    """The shape values one routine instance takes as `size_t` arguments instead of constants."""

    def __init__(self, values: Mapping[str, Any], keys: Iterable[str]) -> None:
        self.values: dict[str, int] = {}
        for key in keys:
            value = values[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise TypeError(f"shape argument {key} must be a non-negative whole number, not {value!r}")
            if not key.isidentifier() or not key.isupper():
                raise ValueError(f"shape argument name {key!r} must be an upper-case C identifier")
            self.values[key] = int(value)
        self.used: set[str] = set()
        self.symbols = {key: CExpr(key, _ATOM, frozenset({key}), self.used) for key in self.values}

    def names(self) -> list[str]:
        """The arguments the rendered code printed, in declaration order."""
        return [key for key in self.values if key in self.used]

    def parameters(self) -> list[str]:
        return [f"size_t {key}" for key in self.names()]

    def arguments(self) -> list[str]:
        return [str(self.values[key]) for key in self.names()]


def signed(value: Any) -> Any:
    """Jinja filter: the value where it meets signed (ptrdiff_t) arithmetic."""
    if isinstance(value, CExpr):
        text = str(value)
        return f"(ptrdiff_t){text}" if value.level == _ATOM else f"(ptrdiff_t)({text})"
    return value


def unsigned(value: Any) -> str:
    """Jinja filter: an unsigned C operand (a `u`-suffixed literal for a number)."""
    if isinstance(value, CExpr):
        text = str(value)
        return text if value.level == _ATOM else f"({text})"
    return f"{value}u"


def as_float(value: CExpr) -> str:
    """A shape argument as a float operand (what the `cf` filter prints for one)."""
    text = str(value)
    return f"(float){text}" if value.level == _ATOM else f"(float)({text})"
