"""One escaping function per destination a hostile string can reach.

Names in a model, fields of a target file and command-line values are untrusted: they reach
generated C, Makefiles, CMake files, JSON and shell commands only through these functions.
C identifiers are never taken from them: `c_identifier` builds a fresh one from a safe alphabet.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable
from typing import Any

from .errors import NeurogenError


class UnsafeStringError(NeurogenError):
    """A string cannot be written safely to its destination (a newline in a build flag ...)."""


# -- C ---------------------------------------------------------------------------------------

# Characters a comment keeps. Everything that could end it (`*`), splice a line (`\`, CR, LF,
# trigraph `??/`), start a nested comment warning (`/*` needs `*`) or depend on the source
# character set (non-ASCII) is left out.
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_COMMENT_SAFE = frozenset(_ALNUM + " _-.,:;=+()[]<>#@!%&|^~{}$'\"/")
NAME_IN_COMMENT = 80  # characters of a name kept in a comment; a 10 kB name is cut to this


def c_comment(value: object, limit: int | None = None) -> str:
    """`value` made safe for the inside of a C block comment: unsafe characters become '_', runs of
    spaces one space, and the text is cut to `limit` characters (with '...' where it was cut)."""
    text = "".join(ch if ch in _COMMENT_SAFE else "_" for ch in str(value))
    text = re.sub(r" {2,}", " ", text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


_STRING_SAFE = frozenset(_ALNUM + " _-.:/()[]<>=+,;#@!'")


def name_comment(value: object) -> str:
    """A name from a model as a comment shows it: made safe, and cut to NAME_IN_COMMENT characters."""
    return c_comment(value, NAME_IN_COMMENT)


def c_string(value: str) -> str:
    """The body of a C string literal: printable ASCII as is, everything else as octal UTF-8 bytes.

    '?' is escaped too, so no trigraph can form; octal escapes are always three digits.
    """
    return "".join(chr(b) if chr(b) in _STRING_SAFE else f"\\{b:03o}" for b in value.encode("utf-8"))


def _words(text: str) -> list[str]:
    return text.split()


# The C99 and C11 keywords and the names the C library's headers define as macros or types that a
# project's API prefix could run into (`<name>_...` is always suffixed, but the header guard, the
# include file and the library name stand alone).
C_KEYWORDS = frozenset(_words("""
auto break case char const continue default do double else enum extern float for goto if inline int long
register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while
_Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn _Static_assert _Thread_local
"""))

# Headers a project must not be named after: its include/<name>.h is on the include path of the
# project and of every target linking it, and would hide the system's header of that name.
SYSTEM_HEADERS = frozenset(_words("""
assert complex ctype errno fenv float inttypes iso646 limits locale math setjmp signal stdalign stdarg
stdatomic stdbool stddef stdint stdio stdlib stdnoreturn string tgmath threads time uchar wchar wctype
pthread unistd sched semaphore fcntl dirent dlfcn poll strings termios syslog alloca malloc memory
immintrin intrin arm_neon arm_fp16 hexagon_types hexagon_protos hvx_hexagon_protos cuda cuda_runtime
"""))
IDENTIFIER_MAX = 40  # characters of a project name: every API symbol, file and macro starts with it


def c_identifier(text: str) -> str:
    """A C identifier made from `text`: lower-case letters, digits and single underscores, never starting
    with a digit or an underscore, at most IDENTIFIER_MAX characters; 'model' when nothing is left."""
    ident = re.sub(r"[^0-9a-zA-Z_]", "_", text).lower()
    ident = re.sub(r"_+", "_", ident).strip("_")[:IDENTIFIER_MAX].strip("_") or "model"
    return f"m_{ident}"[:IDENTIFIER_MAX].strip("_") if ident[0].isdigit() else ident


def reserved_name(ident: str) -> str | None:
    """Why `ident` cannot name a project (its header or symbols would collide), or None."""
    if ident in C_KEYWORDS:
        return f"'{ident}' is a C keyword"
    if ident in SYSTEM_HEADERS:
        return f"include/{ident}.h would hide the system header <{ident}.h>"
    if ident.startswith("ng_") or ident == "ng":
        return "names starting with 'ng_' belong to neurogen's runtime files"
    return None


# -- build files -----------------------------------------------------------------------------

def _check_line(value: str, what: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise UnsafeStringError(f"{what} {value!r} holds a control character (newline, tab ...); remove it")
    return value


def shell_words(words: Iterable[str], what: str = "value") -> str:
    """Words joined for a POSIX shell, each quoted where it needs it (one line, no control characters)."""
    return shlex.join(_check_line(str(w), what) for w in words)


def make_words(words: Iterable[str], what: str = "build flag") -> str:
    """Words for the right-hand side of a Makefile variable that recipes pass to the shell: quoted for the
    shell, then `$` doubled (no make expansion) and `#` escaped (no comment)."""
    return shell_words(words, what).replace("$", "$$").replace("#", "\\#")


def cmake_words(words: Iterable[str], what: str = "build flag") -> str:
    """Words as the body of a CMake quoted argument that `separate_arguments(... UNIX_COMMAND ...)` splits
    back into the same words: quoted for that splitting, then CMake's `\\`, `"` and `$` escaped (`;` and
    `$<` are refused: no escape keeps them literal everywhere CMake uses the flags)."""
    words = list(words)
    for w in words:
        if "$<" in str(w):  # a generator expression would be evaluated where the flags are used
            raise UnsafeStringError(f"{what} {w!r} holds '$<' (a CMake generator expression); remove it")
        if ";" in str(w):  # CMake splits list values at every ';', quoted or not
            raise UnsafeStringError(f"{what} {w!r} holds ';', which CMake reads as a list separator; remove it")
    text = " ".join(_unix_command_word(_check_line(str(w), what)) for w in words)
    return "".join("\\" + ch if ch in '\\"$' else ch for ch in text)


def _unix_command_word(word: str) -> str:
    """One word as CMake's UNIX_COMMAND splitting reads it back: in double quotes, where a backslash
    escapes the next character (CMake also does so inside single quotes, unlike a shell)."""
    if word and all(ch.isalnum() or ch in "-_=+,./:@%^" for ch in word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- the terminal ----------------------------------------------------------------------------

_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def terminal(value: object) -> str:
    """`value` as the CLI prints it: control characters (escape sequences, CR), and invisible or
    direction-changing characters shown as \\xNN / \\uNNNN, so a name cannot rewrite the screen."""
    return _INVISIBLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256
                          else f"\\u{ord(m.group()):04x}", str(value))


# -- JSON ------------------------------------------------------------------------------------

def json_text(value: Any, *, indent: int | None = 2) -> str:
    """JSON with every non-ASCII character escaped and keys sorted: the same bytes for the same value."""
    return json.dumps(value, indent=indent, sort_keys=True, ensure_ascii=True, allow_nan=False)
