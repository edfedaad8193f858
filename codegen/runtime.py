"""Run a generated project from Python: build it as a shared library and call it with ctypes."""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .build import build, project_name
from .errors import NeurogenError

ARENA_ALIGN = 64


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # as held in memory: NHWC for the NHWC inputs and outputs of TF models


def _io_info(io: dict) -> TensorInfo:
    shape = tuple(int(d) for d in io["shape"])
    # Records before `order` was written held the logical NCHW shape of an NHWC buffer.
    if io.get("order") != "memory" and io.get("layout") == "nhwc" and len(shape) == 4:
        shape = (shape[0], shape[2], shape[3], shape[1])
    return TensorInfo(io["name"], shape)


def check_input(info: TensorInfo, value: object) -> np.ndarray:
    """`value` as the contiguous float32 buffer of input `info`; its shape must be exactly the model's."""
    expected = f"expected shape {info.shape}"
    try:
        array = np.asarray(value)
    except ValueError as exc:  # a ragged nested list
        raise NeurogenError(f"input '{info.name}' is not an array ({exc}); {expected}") from None
    if not np.issubdtype(array.dtype, np.floating):
        raise NeurogenError(f"input '{info.name}' holds {array.dtype} values; give floats "
                            f"(e.g. .astype(np.float32)), {expected}")
    if array.ndim == 0 and info.shape == (1,):
        array = array.reshape(1)  # the io description holds a scalar as [1]
    if array.ndim != len(info.shape):
        raise NeurogenError(f"input '{info.name}' has shape {array.shape} (rank {array.ndim}); {expected}")
    for axis, (got, want) in enumerate(zip(array.shape, info.shape)):
        if got != want:
            raise NeurogenError(f"input '{info.name}': axis {axis} is {got}, expected {want}; {expected}")
    return np.ascontiguousarray(array, dtype=np.float32)


class _Context(ctypes.Structure):
    _fields_ = [("arena", ctypes.c_void_p), ("ready", ctypes.c_uint)]


class CompiledModel:
    """A built model: `model.run({"input": array})` returns {output name: array}.

    One instance runs one inference at a time (it owns one arena); make one per thread.
    """

    def __init__(self, project: str | os.PathLike, library: str | os.PathLike):
        self.project = Path(project)
        self.name = project_name(self.project)
        rec = json.loads((self.project / "tuning.json").read_text())
        self.inputs = [_io_info(io) for io in rec["io"]["inputs"]]
        self.outputs = [_io_info(io) for io in rec["io"]["outputs"]]
        self._lib = ctypes.CDLL(str(library))
        self._init = getattr(self._lib, f"{self.name}_init")
        self._init.argtypes = [ctypes.POINTER(_Context), ctypes.c_void_p, ctypes.c_size_t]
        self._init.restype = ctypes.c_int
        self._run = getattr(self._lib, f"{self.name}_run")
        self._run.argtypes = [ctypes.POINTER(_Context), ctypes.c_void_p, ctypes.c_void_p]
        self._run.restype = ctypes.c_int
        size = int(rec["arena_bytes"])
        self._storage = np.zeros(size + ARENA_ALIGN, dtype=np.uint8)
        skew = (-self._storage.ctypes.data) % ARENA_ALIGN
        self._arena = self._storage[skew:skew + size]
        self._ctx = _Context()
        status = self._init(ctypes.byref(self._ctx), self._storage.ctypes.data + skew, size)
        if status != 0:
            raise NeurogenError(f"{self.name}_init failed with status {status}")
        self._deinit = getattr(self._lib, f"{self.name}_deinit")
        self._deinit.argtypes = [ctypes.POINTER(_Context)]
        self._deinit.restype = ctypes.c_int
        self.threads = int(rec.get("threads", 1))

    def close(self) -> None:
        """Stop the model's worker threads (if it has any); the model cannot run afterwards."""
        if getattr(self, "_ctx", None) is not None and self._ctx.ready:
            self._deinit(ctypes.byref(self._ctx))

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> CompiledModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _input_arrays(self, args: tuple, kwargs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        if len(args) == 1 and isinstance(args[0], Mapping):
            kwargs = {**args[0], **kwargs}
            args = ()
        if args and kwargs:
            raise TypeError("give inputs either by position or by name, not both")
        if kwargs:
            unknown = set(kwargs) - {i.name for i in self.inputs}
            if unknown:
                raise NeurogenError(f"unknown input(s) {sorted(unknown)}; inputs: {[i.name for i in self.inputs]}")
            missing = [i.name for i in self.inputs if i.name not in kwargs]
            if missing:
                raise NeurogenError(f"missing input(s) {missing}")
            args = tuple(kwargs[i.name] for i in self.inputs)
        if len(args) != len(self.inputs):
            raise NeurogenError(f"expected {len(self.inputs)} input(s), got {len(args)}")
        return [check_input(info, value) for info, value in zip(self.inputs, args)]

    def run(self, *args: np.ndarray | Mapping[str, np.ndarray], **kwargs: np.ndarray) -> dict[str, np.ndarray]:
        arrays = self._input_arrays(args, kwargs)
        results = [np.empty(info.shape, dtype=np.float32) for info in self.outputs]
        in_ptrs = (ctypes.c_void_p * len(arrays))(*(a.ctypes.data for a in arrays))
        out_ptrs = (ctypes.c_void_p * len(results))(*(r.ctypes.data for r in results))
        status = self._run(ctypes.byref(self._ctx), in_ptrs, out_ptrs)
        if status != 0:
            raise NeurogenError(f"{self.name}_run failed with status {status}")
        return {info.name: r for info, r in zip(self.outputs, results)}

    __call__ = run


def load(project: str | os.PathLike, *, target: str = "host", werror: bool = False,
         extra_cflags: Sequence[str] = ()) -> CompiledModel:
    """Build (or reuse the cached build of) a generated project and load it."""
    library = build(project, kind="shared", target=target, werror=werror, extra_cflags=tuple(extra_cflags))
    return CompiledModel(project, library)
