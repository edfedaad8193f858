"""Build a generated project with the target's C compiler (no make or cmake needed)."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .errors import BuildError
from .targets import Target
from .targets import load as load_target

WARNINGS = ("-std=c99", "-Wall", "-Wextra")
# -O1, as the AddressSanitizer documentation advises: the checks are the same, and the large specialised
# routines (Winograd's unrolled transforms) compile several times faster than at -O2.
SANITIZE = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1")


def project_name(project: Path) -> str:
    headers = sorted((project / "include").glob("*.h"))
    if len(headers) != 1:
        raise BuildError(f"{project}: not a neurogen project (expected one header in include/)")
    return headers[0].stem


def _sources(project: Path, name: str) -> list[Path]:
    srcs = [project / "src" / f"{name}.c", *sorted((project / "src" / "routines").glob("*.c"))]
    weights = project / "src" / f"{name}_weights.c"
    return srcs + ([weights] if weights.exists() else [])


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise BuildError(f"C compiler '{cmd[0]}' not found; install one or set CC") from None
    if proc.returncode != 0:
        log = (proc.stderr or proc.stdout).strip()
        lines = log.splitlines()
        if len(lines) > 40:
            log = "\n".join(lines[:40] + [f"... ({len(lines) - 40} more lines)"])
        raise BuildError(f"build failed: {shlex.join(cmd)}\n{log}")


def _flags(target: Target, werror: bool, sanitize: bool, extra: tuple[str, ...]) -> list[str]:
    # Hidden by default, as the project's CMake and Makefile build it: a library exports only its API.
    flags = [*WARNINGS, *target.cflags, "-fPIC", "-fvisibility=hidden"]
    if werror:
        flags.append("-Werror")
    if sanitize:
        flags += SANITIZE
    return flags + list(extra)


def _digest(project: Path, cc: str, flags: list[str], extra_files: list[Path]) -> str:
    h = hashlib.sha256(shlex.join([cc, *flags]).encode())
    for path in sorted(p for p in (project / "src").rglob("*") if p.is_file()) + \
            sorted((project / "include").glob("*")) + extra_files:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def build(project: str | os.PathLike, *, kind: str = "shared", target: str | Target = "host",
          main: str | os.PathLike | None = None, werror: bool = False, sanitize: bool = False,
          extra_cflags: tuple[str, ...] = (), jobs: int | None = None) -> Path:
    """Compile `project` into a shared library (`kind="shared"`) or a program (`kind="program"`,
    from `main`, by default the project's example/main.c). Results are cached in project/build/."""
    project = Path(project).resolve()
    tgt = target if isinstance(target, Target) else load_target(target)
    name = project_name(project)
    cc = tgt.compiler
    if shutil.which(cc) is None:
        raise BuildError(f"C compiler '{cc}' not found; install one or set CC")
    flags = _flags(tgt, werror, sanitize, extra_cflags)
    if (project / "src" / "ng_threads.h").is_file():  # built for several threads
        flags.append("-pthread")
    main_path = Path(main).resolve() if main else project / "example" / "main.c"
    extra_files = [main_path] if kind == "program" else []
    out_dir = project / "build" / f"{kind}-{_digest(project, cc, flags, extra_files)}"
    product = out_dir / (f"lib{name}.so" if kind == "shared" else f"{name}_run")
    if product.exists():
        return product
    # Relative to the project, where the compiler runs: -Wa, splits its argument at commas, so a path with
    # one would reach the assembler in pieces.
    include = ["-I", "include", "-Wa,-Isrc"]
    link_flags = [*tgt.ldflags, *(SANITIZE[:1] if sanitize else ())]
    if kind == "shared":
        compile_and_link(cc, flags, include, _sources(project, name), out_dir / "obj", product,
                         link=["-shared", *link_flags], libs=tgt.libs, cwd=project, jobs=jobs)
    elif kind == "program":
        compile_and_link(cc, flags, include, [*_sources(project, name), main_path], out_dir / "obj", product,
                         link=link_flags, libs=tgt.libs, cwd=project, jobs=jobs)
    else:
        raise BuildError(f"unknown build kind '{kind}' (shared or program)")
    return product


def compile_and_link(cc: str, flags: list[str], include: list[str], sources: list[Path], obj_dir: Path,
                     product: Path, *, link: list[str], libs: tuple[str, ...], cwd: Path,
                     jobs: int | None = None) -> Path:
    """Compile `sources` in parallel, then link them into `product` (written atomically)."""
    obj_dir.mkdir(parents=True, exist_ok=True)
    objects = [obj_dir / f"{i:03d}_{src.stem}.o" for i, src in enumerate(sources)]
    commands = [[cc, *flags, *include, "-c", str(src), "-o", str(obj)] for src, obj in zip(sources, objects)]
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        for future in [pool.submit(_run, cmd, cwd) for cmd in commands]:
            future.result()
    tmp = product.with_suffix(".tmp")
    _run([cc, *flags, *link, *map(str, objects), "-o", str(tmp), *libs], cwd)
    os.replace(tmp, product)
    return product
