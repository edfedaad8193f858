"""Small in-place graph edits the passes share."""

from __future__ import annotations

from ..ir import Graph, Layer


def rename_uses(graph: Graph, old: str, new: str) -> None:
    for layer in graph.layers:
        layer.inputs = [new if n == old else n for n in layer.inputs]


def sole_consumer(graph: Graph, name: str) -> Layer | None:
    """The one layer reading `name`, when it is the only reader and not a graph output."""
    if name in graph.outputs:
        return None
    readers = graph.consumers().get(name, [])
    return readers[0] if len(readers) == 1 else None


def bypass(graph: Graph, layer: Layer, replacement: str) -> None:
    """Remove `layer`, making its readers read `replacement` instead of its output."""
    out = layer.outputs[0]
    graph.layers.remove(layer)
    if out in graph.outputs:
        # Keep the output's name: the producer of `replacement` writes it directly.
        producer = graph.producers()[replacement]
        producer.outputs[producer.outputs.index(replacement)] = out
        rename_uses(graph, replacement, out)
        graph.tensors[out].layout = graph.tensors[replacement].layout
        del graph.tensors[replacement]
    else:
        rename_uses(graph, out, replacement)
        del graph.tensors[out]


def spatial_zero_pads(graph: Graph, pad: Layer) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of a pad layer that only adds zeros around H and W of a 4-D tensor."""
    a = pad.attrs
    pads = tuple(a["pads"])
    if a["mode"] != "constant" or a["value"] != 0.0 or len(graph.shape(pad.inputs[0])) != 4 or len(pads) != 8:
        return None
    if any(p < 0 for p in pads) or any(pads[i] for i in (0, 1, 4, 5)):
        return None  # batch or channel padding, or cropping, is no convolution padding
    return pads[2], pads[3], pads[6], pads[7]
