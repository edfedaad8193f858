"""codegen.emit: exact float literals, identifiers, C strings, and reproducible, path-free projects."""

from __future__ import annotations

import os
import re
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from graphkit import varied_graph

import codegen
from codegen import compiler, targets
from codegen.emit import MANIFEST, c_float, write_project
from codegen.errors import OutputError
from codegen.escape import c_comment, c_identifier, c_string
from codegen.paths import TEMPLATES
from codegen.record import graph_hash

C_FLOAT_LITERAL = re.compile(r"-?(?:(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)f")


def parse_c_float(text: str) -> np.float32:
    assert C_FLOAT_LITERAL.fullmatch(text), f"{text!r} is not a C float literal"
    return np.float32(float(text[:-1]))


def same_bits(a: np.float32, b: np.float32) -> bool:
    return np.array(a, np.float32).view(np.uint32) == np.array(b, np.float32).view(np.uint32)


# -- c_float ---------------------------------------------------------------------------------------

def test_c_float_round_trips_random_bit_patterns():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=20000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    assert values.size > 19000
    for v in values:
        assert same_bits(parse_c_float(c_float(v)), v), (v, c_float(v))


SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, 0.1, 1 / 3, 1 / 6, 6.0, 100.0, 1e20, -1e-20, 16777216.0, 16777217.0,
           123456789.0, float(np.finfo(np.float32).max), float(np.finfo(np.float32).tiny),
           float(np.finfo(np.float32).smallest_subnormal), 2.0**-149 * 3, float(np.finfo(np.float32).eps),
           3.4028235e38, 1.17549435e-38, 0.2, 0.75, 1e-4]


@pytest.mark.parametrize("value", SPECIAL, ids=repr)
def test_c_float_special_values(value):
    text = c_float(value)
    assert same_bits(parse_c_float(text), np.float32(value)), text


@pytest.mark.parametrize("value", [0.1, 1 / 3, 1e-40, 2.0 / 3.0, np.pi, np.e])
def test_c_float_of_a_double_is_the_nearest_float32(value):
    assert same_bits(parse_c_float(c_float(value)), np.float32(value))


def test_c_float_non_finite():
    assert c_float(float("inf")) == "INFINITY"
    assert c_float(-np.inf) == "-INFINITY"
    assert c_float(np.float32("nan")) == "NAN"
    assert c_float(float("nan")) == "NAN"


def test_c_float_keeps_the_sign_of_zero():
    assert c_float(-0.0).startswith("-")
    assert not c_float(0.0).startswith("-")


def test_c_float_accepts_numpy_scalars():
    for dtype in (np.float16, np.float32, np.float64):
        v = dtype(0.3)
        assert same_bits(parse_c_float(c_float(v)), np.float32(v))


# -- identifiers and C text ------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("resnet50", "resnet50"),
    ("MobileNet-V2", "mobilenet_v2"),
    ("my model (final).onnx", "my_model_final_onnx"),
    ("123abc", "m_123abc"),
    ("__init__", "init"),
    ("a--b__c", "a_b_c"),
    ("", "model"),
    ("___", "model"),
    ("modèle", "mod_le"),
    ("模型", "model"),
])
def test_c_identifier_examples(text, expected):
    assert c_identifier(text) == expected


def test_c_identifier_is_always_a_c_identifier_and_idempotent():
    rng = np.random.default_rng(3)
    alphabet = string.printable + "éπ模型_-"
    for _ in range(2000):
        text = "".join(rng.choice(list(alphabet), size=rng.integers(0, 12)))
        ident = c_identifier(text)
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", ident), (text, ident)
        assert not ident.startswith("_") and not ident.endswith("_") and "__" not in ident
        assert c_identifier(ident) == ident


def decode_c_string(body: str) -> bytes:
    """The bytes a C99 compiler makes of a string literal's body (with trigraphs, as -std=c99 has them)."""
    trigraphs = {"=": "#", "/": "\\", "'": "^", "(": "[", ")": "]", "!": "|", "<": "{", ">": "}", "-": "~"}
    body = re.sub(r"\?\?([=/'()!<>-])", lambda m: trigraphs[m.group(1)], body)
    out = bytearray()
    i = 0
    simple = {"n": 10, "t": 9, "r": 13, "\\": 92, '"': 34, "'": 39, "?": 63, "a": 7, "b": 8, "f": 12, "v": 11}
    while i < len(body):
        ch = body[i]
        if ch == '"':
            raise AssertionError(f"unescaped quote in {body!r}")
        if ch != "\\":
            out += ch.encode()
            i += 1
            continue
        m = re.match(r"[0-7]{1,3}", body[i + 1:])
        if m:
            value = int(m.group(0), 8)
            assert value < 256, f"octal escape out of range in {body!r}"
            out.append(value)
            i += 1 + len(m.group(0))
        else:
            out.append(simple[body[i + 1]])
            i += 2
    return bytes(out)


@pytest.mark.parametrize("text", ["input", "a b", 'quote"d', "back\\slash", "new\nline", "tab\t", "x:0/y.z",
                                  "input.1", "äöü", "模型"])
def test_c_string_decodes_to_the_utf8_of_the_name(text):
    assert decode_c_string(c_string(text)) == text.encode()


@pytest.mark.parametrize("text", ["emoji 🙂", "25°C", "a–b", "non\u00a0breaking"])
def test_c_string_escapes_non_ascii_symbols_as_utf8(text):
    assert decode_c_string(c_string(text)) == text.encode()


@pytest.mark.parametrize("text", ["what??=", "x??/", "a??(b??)"])
def test_c_string_escapes_trigraphs(text):
    assert decode_c_string(c_string(text)) == text.encode()


def test_c_comment_cannot_close_the_comment():
    for text in ["a */ b", "/* nested", "multi\nline", "**/*"]:
        body = c_comment(text)
        assert "*/" not in body and "/*" not in body and "\n" not in body


# -- generated projects ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def host():
    return targets.load("host")


@pytest.mark.parametrize("weights", ["incbin", "c-array"])
def test_generate_is_byte_for_byte_reproducible(host, weights):
    first = compiler.generate(varied_graph(), host, name="net", weights=weights)
    second = compiler.generate(varied_graph(), host, name="net", weights=weights)
    assert sorted(first) == sorted(second)
    for path in first:
        assert first[path] == second[path], path
    assert all(isinstance(v, bytes) for v in first.values())


def test_generate_does_not_modify_the_graph(host):
    g = varied_graph()
    before = graph_hash(g)
    compiler.generate(g, host, name="net")
    assert graph_hash(g) == before


def test_generated_project_layout(host):
    files = compiler.generate(varied_graph(), host, name="net")
    for path in ("include/net.h", "src/net.c", "src/net_internal.h", "Makefile", "CMakeLists.txt",
                 "example/main.c", "tuning.json", "src/net_weights.c", "src/net_weights.bin"):
        assert path in files, path
    assert any(p.startswith("src/routines/") for p in files)
    array_files = compiler.generate(varied_graph(), host, name="net", weights="c-array")
    assert "src/net_weights.bin" not in array_files and "src/net_weights.c" in array_files


def test_unknown_weights_mode(host):
    with pytest.raises(OutputError, match="unknown weights mode"):
        compiler.generate(varied_graph(), host, name="net", weights="elf")


def forbidden_strings(tmp_path: Path) -> list[str]:
    package = Path(codegen.__file__).resolve().parent
    return sorted({str(tmp_path), tmp_path.name, str(Path.cwd()), str(Path.home()), str(package),
                   str(package.parent), str(TEMPLATES), "/tmp/", "/work/", "/root/", "/home/"})


@pytest.mark.parametrize("weights", ["incbin", "c-array"])
def test_written_projects_have_no_absolute_paths(host, tmp_path, weights):
    files = compiler.generate(varied_graph(), host, name="net", weights=weights)
    a = write_project(files, tmp_path / "first_project_dir")
    b = write_project(files, tmp_path / "second" / "other_name")
    tree_a = {p.relative_to(a): p.read_bytes() for p in sorted(a.rglob("*")) if p.is_file()}
    tree_b = {p.relative_to(b): p.read_bytes() for p in sorted(b.rglob("*")) if p.is_file()}
    assert tree_a == tree_b
    assert {str(p) for p in tree_a} == set(files) | {MANIFEST}
    for rel, data in tree_a.items():
        for needle in forbidden_strings(tmp_path) + ["first_project_dir", "other_name"]:
            assert needle.encode() not in data, f"{rel} contains {needle!r}"


def test_write_project_refuses_a_file(host, tmp_path):
    target = tmp_path / "a_file"
    target.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        write_project(compiler.generate(varied_graph(), host, name="net"), target)
    assert target.read_text() == "x"


GENERATE_SCRIPT = r"""
import hashlib, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from onnx import TensorProto, helper, numpy_helper
from graphkit import varied_graph
from codegen import compiler, targets
from codegen.frontends.onnx import import_model

rng = np.random.default_rng(0)
inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
         for n, s in [("w", (4, 3, 3, 3)), ("b", (4,)), ("fc", (5, 4))]]
nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("GlobalAveragePool", ["r"], ["g"]),
         helper.make_node("Flatten", ["g"], ["f"]),
         helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("logits", "probs")],
                          inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
h = hashlib.sha256()
for g in (varied_graph(), compiler.import_model(model)):
    for weights in ("incbin", "c-array"):
        files = compiler.generate(g, targets.load("host"), name="net", weights=weights)
        for path in sorted(files):
            h.update(path.encode() + b"\0" + files[path])
print(h.hexdigest())
"""


def test_generate_does_not_depend_on_the_hash_seed(tmp_path):
    """Set and dict orders must not leak into the output: generate under two PYTHONHASHSEEDs."""
    script = tmp_path / "gen.py"
    script.write_text(GENERATE_SCRIPT)
    digests = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, str(script), str(Path(__file__).parent)], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, proc.stderr
        digests.add(proc.stdout.strip())
    assert len(digests) == 1
