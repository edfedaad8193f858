"""The escaping functions, one per destination (codegen/escape.py), on random and hostile strings."""

from __future__ import annotations

import json
import re
import shlex
import subprocess

import numpy as np
import pytest

from codegen.escape import (
    UnsafeStringError,
    c_comment,
    c_identifier,
    cmake_words,
    json_text,
    make_words,
    name_comment,
    reserved_name,
    shell_words,
)

HOSTILE = ["*/", "*\\\r/", "a\r\nb", "x\\\n", "??/", "??=", "/*", "\x00", "\x1b[31m", "模型", "\u202e", "%s",
           "`id`", "$(id)", "'\"", "#", "\t", "\f\v"]


def random_texts(count: int = 3000) -> list[str]:
    rng = np.random.default_rng(7)
    pieces = [*HOSTILE, *"abc */\\?#;$`'\"\r\n\t "]
    return ["".join(rng.choice(pieces, size=rng.integers(0, 12))) for _ in range(count)]


def test_a_comment_body_keeps_only_safe_printable_ascii():
    for text in random_texts():
        body = c_comment(text)
        assert re.fullmatch(r"[ -~]*", body), repr(body)  # printable ASCII only
        for bad in ("*", "\\", "?", "\r", "\n"):
            assert bad not in body, (text, body)


def test_a_long_name_is_cut_in_comments():
    assert len(name_comment("n" * 10_000)) == 80
    assert name_comment("n" * 10_000).endswith("...")
    assert c_comment("n" * 10_000) == "n" * 10_000  # cut only where asked


@pytest.mark.parametrize("text", ["", "int", "x" * 500, "a-b", "a_b", "__x__", "9lives", "模型"])
def test_identifiers_are_short_lowercase_c_identifiers(text):
    ident = c_identifier(text)
    assert re.fullmatch(r"[a-z][a-z0-9_]{0,39}", ident) and "__" not in ident and not ident.endswith("_")


@pytest.mark.parametrize("name", ["math", "string", "stdint", "stdio", "ng_threads", "int", "return"])
def test_reserved_names(name):
    assert reserved_name(name)


def test_shell_words_round_trip():
    for text in random_texts(500):
        words = [w for w in text.split("\n") if not any(ord(c) < 32 for c in w)]
        assert shlex.split(shell_words(words)) == words


def test_control_characters_are_refused_in_build_flags():
    for maker in (shell_words, make_words, cmake_words):
        with pytest.raises(UnsafeStringError, match="control character"):
            maker(["-O2", "-DX=a\nall:"])


def test_make_words_survive_make_and_the_shell(tmp_path):
    words = ["-O2", "-DA=$(shell id)", "-DB=`id`", "-DC='a b'#c", '-DD="q"&&id', "-DE=50%\\x", "-DF=$$x"]
    (tmp_path / "Makefile").write_text(f"FLAGS := {make_words(words)}\nall:\n\t@printf '%s\\n' $(FLAGS)\n")
    out = subprocess.run(["make", "-s"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == words


def test_json_text_is_ascii_and_deterministic():
    value = {"b": "模型\u202e", "a": ["*/", "\x00"]}
    text = json_text(value)
    assert text.isascii() and json.loads(text) == value and text == json_text(dict(reversed(value.items())))
