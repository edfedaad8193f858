"""The models users bring: Keras applications and torchvision networks, exported the usual ways.

    python bench/exports.py mobilenet_v3_small resnet50 [--cache DIR] [--seed 0]

For each model: the `keras.applications` network (weights=None, 224x224x3, batch 1, the
default top with its softmax) saved as NAME.keras, and its tf2onnx export
(`tf2onnx.convert.from_keras`, opset 17, input NHWC (1, 224, 224, 3)) as NAME.tf2onnx.onnx;
where torchvision imports, the torchvision network of the same name exported with
`torch.onnx.export` twice, as NAME.torch.onnx (dynamo=False, the TorchScript exporter) and
NAME.dynamo.onnx (dynamo=True), opset 17, eval mode, input NCHW (1, 3, 224, 224).

Weights are seeded random (no download), and the BatchNorm statistics are set from a batch of
seeded random images (momentum 0 in Keras, 1 in torch, one training-mode forward pass, momentum
restored) so that activations keep a sensible scale through the network and the outputs are not
degenerate. The same seed gives the same weights (manifest.json holds their hash; the files' bytes
differ from run to run: .keras is a zip with time stamps, and tf2onnx numbers constants in no fixed order).

Exports are cached: DIR/NAME-seedS-KEY/ where KEY hashes the model name, seed, resolution and
the versions of the libraries that build and export them; `manifest.json` is written last and
lists the files, so a folder without one is an unfinished export and is done again.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import logging
import multiprocessing
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

EXPORTS_VERSION = 1  # bump when what is exported changes: old cache folders are then not reused
OPSET = 17
CALIBRATION_BATCH = 4
TORCH_HINT = "install torch==2.14.1 torchvision==0.29.1 for the torch-export rows"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "neurogen" / "bench-exports"
# Whose versions change the exported bytes (or the weights): part of the cache key.
KEY_PACKAGES = ("numpy", "tensorflow", "keras", "tf2onnx", "onnx", "torch", "torchvision", "onnxscript")


@dataclass(frozen=True)
class ExportModel:
    name: str
    keras_class: str  # in keras.applications
    # The input range the network expects: [0, 255] where the Keras model holds its own
    # preprocessing (MobileNetV3, EfficientNet), else the preprocessed range.
    input_range: tuple[float, float]
    torchvision: str | None  # the torchvision builder of the same architecture, if the bench exports it


MODELS: dict[str, ExportModel] = {m.name: m for m in (
    ExportModel("mobilenet_v2", "MobileNetV2", (-1.0, 1.0), "mobilenet_v2"),
    ExportModel("mobilenet_v3_small", "MobileNetV3Small", (0.0, 255.0), "mobilenet_v3_small"),
    ExportModel("mobilenet_v3_large", "MobileNetV3Large", (0.0, 255.0), "mobilenet_v3_large"),
    ExportModel("resnet50", "ResNet50", (-128.0, 128.0), "resnet50"),  # caffe-style: BGR minus the mean
    ExportModel("vgg16", "VGG16", (-128.0, 128.0), None),
    ExportModel("efficientnet_b0", "EfficientNetB0", (0.0, 255.0), None),
)}
SOURCES = ("keras", "tf2onnx", "torch", "dynamo")
TORCH_RANGE = (-1.0, 1.0)  # torchvision networks take normalised images and hold no preprocessing


@dataclass
class Exported:
    """One model's exports: source -> file (absent where not made), and why not / what the exporter said."""

    model: str
    seed: int
    resolution: int
    folder: str
    files: dict[str, str] = field(default_factory=dict)  # source -> file name in `folder`
    notes: dict[str, str] = field(default_factory=dict)  # source -> a skip reason or an exporter warning
    versions: dict[str, str | None] = field(default_factory=dict)
    # Hashes of the weights (Keras; torch where exported): equal for equal seeds. The files' bytes are not:
    # .keras is a zip with timestamps, and tf2onnx numbers its folded constants in no fixed order.
    weights_sha256: dict[str, str] = field(default_factory=dict)

    def path(self, source: str) -> Path | None:
        return Path(self.folder) / self.files[source] if source in self.files else None

    def layout(self, source: str) -> str:
        """The input layout of a source's file: the Keras model and its tf2onnx export take NHWC."""
        return "nchw" if source in ("torch", "dynamo") else "nhwc"


# ---- inputs ----------------------------------------------------------------------------------


def _unit_images(seed: int, count: int, resolution: int) -> np.ndarray:
    """`count` NHWC images of uniform [0, 1) values: one image, seen by every engine in its own range."""
    return np.random.default_rng(seed).random((count, resolution, resolution, 3), dtype=np.float32)


def _scaled(unit: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    lo, hi = value_range
    return (lo + (hi - lo) * unit).astype(np.float32)


def example_input(name: str, source: str, seed: int = 0, resolution: int = 224) -> np.ndarray:
    """The benchmark input for one source: the same random image, NHWC for Keras and tf2onnx, and
    transposed to NCHW (in the torchvision networks' range) for the torch exports."""
    unit = _unit_images(seed + 1000, 1, resolution)  # not one of the calibration images
    if source in ("torch", "dynamo"):
        return np.ascontiguousarray(_scaled(unit, TORCH_RANGE).transpose(0, 3, 1, 2))
    return _scaled(unit, MODELS[name].input_range)


def calibration_inputs(name: str, source: str, seed: int = 0, resolution: int = 224,
                       count: int = CALIBRATION_BATCH) -> np.ndarray:
    """Seeded images in the source's layout and range: BatchNorm statistics, and int8 calibration."""
    unit = _unit_images(seed, count, resolution)
    if source in ("torch", "dynamo"):
        return np.ascontiguousarray(_scaled(unit, TORCH_RANGE).transpose(0, 3, 1, 2))
    return _scaled(unit, MODELS[name].input_range)


# ---- versions and the cache key ---------------------------------------------------------------


def torchvision_problem() -> str | None:
    """Why the torch rows cannot be exported, or None. The wheel may be installed yet not import
    (a torchvision built for another torch fails on its C++ operators)."""
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except Exception as exc:  # ImportError, or the RuntimeError of a mismatched build
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"torchvision not importable ({first}): {TORCH_HINT}"
    return None


def package_version(package: str) -> str | None:
    """The installed version, from the package metadata (no import); TensorFlow ships under several names."""
    for dist in _DISTRIBUTIONS.get(package, (package,)):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


_DISTRIBUTIONS = {"tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos")}


def versions() -> dict[str, str | None]:
    return {package: package_version(package) for package in KEY_PACKAGES}


def cache_key(name: str, seed: int, resolution: int, library_versions: dict[str, str | None],
              torch_ok: bool) -> str:
    text = json.dumps({"exports": EXPORTS_VERSION, "model": name, "seed": seed, "resolution": resolution,
                       "opset": OPSET, "versions": library_versions, "torch_rows": torch_ok}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def weights_hash(arrays) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


# ---- Keras -----------------------------------------------------------------------------------


def build_keras(name: str, seed: int = 0, resolution: int = 224):
    """The keras.applications network, seeded weights, BatchNorm statistics from random images."""
    import keras

    spec = MODELS[name]
    keras.utils.set_random_seed(seed)  # Python, NumPy and backend seeds: the initialisers draw from them
    model = getattr(keras.applications, spec.keras_class)(weights=None, input_shape=(resolution, resolution, 3))
    calibrate_keras(model, calibration_inputs(name, "keras", seed, resolution))
    return model


def calibrate_keras(model, images: np.ndarray) -> None:
    """Every BatchNormalization layer's moving statistics := those of `images` (one training pass).

    Keras updates moving = moving * momentum + batch * (1 - momentum): momentum 0 takes the batch's.
    """
    import keras

    norms = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in norms]
    try:
        for layer in norms:
            layer.momentum = 0.0
        model(images, training=True)
    finally:
        for layer, momentum in zip(norms, saved):
            layer.momentum = momentum


def _all_layers(model) -> list:
    """Layers, nested models' included (keras.applications are flat today; a user's model may not be)."""
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out += _all_layers(layer)
    return out


class _Warnings(logging.Handler):
    """Collects what tf2onnx's optimizer logs when one of its passes fails (it goes on without it)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.messages:
            self.messages.append(message)


def export_tf2onnx(model, path: Path, resolution: int) -> str:
    """tf2onnx's export of the Keras model; returns the optimizer failures tf2onnx logged ('' if none)."""
    import tensorflow as tf
    import tf2onnx

    signature = [tf.TensorSpec((1, resolution, resolution, 3), tf.float32, name="input")]
    catcher = _Warnings()
    logger = logging.getLogger("tf2onnx.optimizer")
    logger.addHandler(catcher)
    try:
        tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET, output_path=str(path))
    finally:
        logger.removeHandler(catcher)
    failed = [m for m in catcher.messages if m.startswith("Failed to apply")]
    return f"tf2onnx {tf2onnx.__version__}: " + "; ".join(failed) if failed else ""


# ---- torch -----------------------------------------------------------------------------------


def build_torch(name: str, seed: int = 0, resolution: int = 224):
    """The torchvision network, seeded weights, BatchNorm running statistics from random images, eval mode."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = getattr(torchvision.models, MODELS[name].torchvision)(weights=None)
    calibrate_torch(model, torch.from_numpy(calibration_inputs(name, "torch", seed, resolution)))
    return model.eval()


def calibrate_torch(model, images) -> None:
    """torch updates running = (1 - momentum) * running + momentum * batch: momentum 1 takes the batch's."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    model.train()
    try:
        for m in norms:
            m.momentum = 1.0
        with torch.no_grad():
            model(images)
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        model.eval()


def export_torch(model, path: Path, x: np.ndarray, dynamo: bool) -> None:
    import torch

    kwargs = {"dynamo": dynamo, "opset_version": OPSET, "input_names": ["input"], "output_names": ["logits"]}
    if dynamo:
        kwargs["external_data"] = False  # one self-contained file, as the TorchScript exporter writes
    with torch.no_grad():
        torch.onnx.export(model, (torch.from_numpy(x),), str(path), **kwargs)


# ---- the cached exports ----------------------------------------------------------------------


def export_model(name: str, cache: Path = DEFAULT_CACHE, seed: int = 0, resolution: int = 224,
                 say=lambda text: None) -> Exported:
    """Every export of one model, from the cache where it holds them.

    Each step runs in a process of its own, stopped if it outgrows MEMORY_SHARE of the memory available:
    tf2onnx holds VGG16's weights many times over (more than 24 GiB), and an exporter taken by the kernel's
    OOM killer would take the benchmark (or a neighbour's job) with it. A failed step is a note on its row,
    and is kept in the manifest, so the next run does not try it again with the same versions."""
    if name not in MODELS:
        raise ValueError(f"unknown export model '{name}' (known: {', '.join(MODELS)})")
    torch_problem = torchvision_problem()
    library_versions = versions()
    folder = Path(cache) / f"{name}-seed{seed}-{cache_key(name, seed, resolution, library_versions, not torch_problem)}"
    manifest = folder / "manifest.json"
    if manifest.exists():
        done = Exported(**json.loads(manifest.read_text()))
        if all((folder / f).exists() for f in done.files.values()):
            say(f"{name}: exports from the cache ({folder})")
            return Exported(**{**asdict(done), "folder": str(folder)})
    shutil.rmtree(folder, ignore_errors=True)  # an unfinished export: start again
    folder.mkdir(parents=True)
    out = Exported(name, seed, resolution, str(folder), versions=library_versions)
    say(f"{name}: building the Keras model (into {folder})")
    step = in_child(keras_step, (name, seed, resolution, str(folder)), "building the Keras model")
    if "error" in step:  # nothing to measure without it
        raise ExportError(f"{name}: {step['error']}")
    out.files["keras"], out.weights_sha256["keras"] = step["file"], step["weights_sha256"]
    say(f"{name}: exporting it with tf2onnx")
    step = in_child(tf2onnx_step, (name, resolution, str(folder)), "the tf2onnx export")
    if "error" in step:  # this row says so; the Keras one still runs
        out.notes["tf2onnx"] = step["error"]
    else:
        out.files["tf2onnx"] = step["file"]
        if step["warning"]:
            out.notes["tf2onnx"] = step["warning"]
    if MODELS[name].torchvision is None:
        out.notes.update({source: f"no torchvision {name} in this benchmark" for source in ("torch", "dynamo")})
    elif torch_problem:
        out.notes.update({source: torch_problem for source in ("torch", "dynamo")})
    else:
        say(f"{name}: building the torchvision model and exporting it (TorchScript and dynamo exporters)")
        step = in_child(torch_step, (name, seed, resolution, str(folder)), "the torch exports")
        if "error" in step:
            out.notes.update({source: step["error"] for source in ("torch", "dynamo")})
        else:
            out.files.update(step["files"])
            out.notes.update(step["notes"])
            out.weights_sha256["torch"] = step["weights_sha256"]
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_text(json.dumps(asdict(out), indent=1, sort_keys=True))
    tmp.replace(manifest)
    return out


class ExportError(Exception):
    """A model could not be built at all (its Keras model): the benchmark marks all its rows failed."""


# ---- the steps, each in a child process -------------------------------------------------------


def keras_step(name: str, seed: int, resolution: int, folder: str) -> dict:
    model = build_keras(name, seed, resolution)
    model.save(str(Path(folder) / f"{name}.keras"))
    return {"file": f"{name}.keras", "weights_sha256": weights_hash(model.get_weights())}


def tf2onnx_step(name: str, resolution: int, folder: str) -> dict:
    import keras

    model = keras.saving.load_model(str(Path(folder) / f"{name}.keras"), compile=False)
    warning = export_tf2onnx(model, Path(folder) / f"{name}.tf2onnx.onnx", resolution)
    return {"file": f"{name}.tf2onnx.onnx", "warning": warning}


def torch_step(name: str, seed: int, resolution: int, folder: str) -> dict:
    model = build_torch(name, seed, resolution)
    x = example_input(name, "torch", seed, resolution)
    files, notes = {}, {}
    for source, dynamo in (("torch", False), ("dynamo", True)):
        path = Path(folder) / f"{name}.{source}.onnx"
        try:
            export_torch(model, path, x, dynamo)
        except Exception as exc:  # e.g. no onnxscript for the dynamo exporter: that row says so
            notes[source] = f"torch.onnx.export(dynamo={dynamo}) failed: {_first_line(exc)}"
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        files[source] = path.name
    return {"files": files, "notes": notes,
            "weights_sha256": weights_hash(t.numpy() for t in model.state_dict().values())}


MEMORY_SHARE = 0.6  # of the memory available when a step starts


def in_child(function, args: tuple, what: str) -> dict:
    """`function(*args)` (a dict) run in a spawned process; {"error": ...} if it raised, died or held more
    than MEMORY_SHARE of the memory that was available (it is then stopped, by its own handle)."""
    context = multiprocessing.get_context("spawn")  # TF and torch do not survive a fork
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(send, function, args), daemon=True)
    budget = MEMORY_SHARE * _meminfo("MemAvailable")
    process.start()
    send.close()
    try:
        while not receive.poll(0.5):
            if not process.is_alive():
                break
            if budget and _rss(process.pid) > budget:
                process.kill()
                return {"error": f"{what} stopped: it held more than {budget / 2**30:.1f} GiB of memory "
                                 f"({MEMORY_SHARE:.0%} of what was available)"}
        try:
            result = receive.recv()
        except EOFError:
            process.join(timeout=10)
            return {"error": f"{what} died (exit code {process.exitcode})"}
        if "error" in result:
            result["error"] = f"{what} failed: {result['error']}"
        return result
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()


def _child_main(send, function, args: tuple) -> None:
    try:
        result = function(*args)
    except Exception as exc:
        result = {"error": _first_line(exc)}
    send.send(result)


def _meminfo(key: str) -> float:
    """Bytes, from /proc/meminfo (0 where there is none: no limit then)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 0.0


def _rss(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) * 1024
    except OSError:  # gone already
        pass
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", choices=list(MODELS))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"(default {DEFAULT_CACHE})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resolution", type=int, default=224)
    args = parser.parse_args(argv)
    for name in args.models:
        done = export_model(name, args.cache, args.seed, args.resolution,
                            say=lambda text: sys.stderr.write(text + "\n"))
        for source in SOURCES:
            path = done.path(source)
            note = done.notes.get(source, "")
            print(f"{name:20} {source:8} {path if path else '-'}" + (f"  ({note})" if note else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
