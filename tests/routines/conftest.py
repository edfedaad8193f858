"""Session-wide builds of the routine-test families: each family is generated once and compiled once per
compiler, however many of its cases run. A failure (a build error, say) is remembered and reported by every
case of the family without trying again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from routine_cases import FAMILIES
from routine_kit import FamilyGraph, build_family, run_sanitized_program, run_shared, write

from codegen import reference


class FamilyBuilds:
    def __init__(self, root: Path):
        self.root = root
        self._done: dict[tuple, Any] = {}
        self._failed: dict[tuple, BaseException] = {}

    def _memo(self, key: tuple, make: Callable[[], Any]) -> Any:
        if key in self._failed:
            raise self._failed[key]
        if key not in self._done:
            try:
                self._done[key] = make()
            except Exception as exc:
                self._failed[key] = exc
                raise
        return self._done[key]

    def graph(self, family: str) -> FamilyGraph:
        return self._memo(("graph", family), lambda: build_family(family, FAMILIES[family], seed=len(family)))

    def reference(self, family: str) -> dict[str, np.ndarray]:
        def make():
            fg = self.graph(family)
            return reference.run(fg.graph, fg.inputs)
        return self._memo(("reference", family), make)

    def project(self, family: str, variant: str = "gcc") -> Path:
        """The generated project; one per compiler, so that two loaded libraries never share symbol names.
        The sanitized programs run on 3 threads: routines that split their work do it on real threads
        there, with uneven shares, under ASan and UBSan (the shared libraries run on one)."""
        threads = 3 if variant.endswith("_sanitized") else 1
        return self._memo(("project", family, variant),
                          lambda: write(self.graph(family), self.root, f"{family}_{variant}", threads=threads))

    def results(self, family: str, cc: str, how: str = "shared") -> dict[str, np.ndarray]:
        """Every output of the family graph, from the shared library or from the sanitized example program."""
        def make():
            fg = self.graph(family)
            if how == "shared":
                return run_shared(self.project(family, cc), cc, fg)
            project = self.project(family, f"{cc}_sanitized")
            return run_sanitized_program(project, cc, fg, self.root / f"{family}_{cc}_io")
        return self._memo(("results", family, cc, how), make)


@pytest.fixture(scope="session")
def builds(tmp_path_factory) -> FamilyBuilds:
    return FamilyBuilds(tmp_path_factory.mktemp("routine_families"))


def xdist_group_of(nodeid: str, callspec: dict[str, Any]) -> str | None:
    """The pytest-xdist group of a routine test: the tests that share one session-wide build (a family and a
    compiler, shared or sanitized; the NEON module's cross builds) run on one worker, so that each build
    is made once however many workers there are (`pytest -n 2 --dist loadgroup`, as `make test` runs)."""
    family, cc = callspec.get("family"), callspec.get("cc")
    name = nodeid.split("::")[-1].split("[")[0]
    if "test_neon.py" in nodeid:
        return "neon"
    if name == "test_family_under_sanitizers":
        return f"{family}-{cc}-sanitized"
    if name == "test_routines_do_not_read_stale_arena_or_output_memory":
        return f"{family}-gcc"  # the gcc shared library of test_<family>[*-gcc]
    if name.startswith("test_") and name[5:] in FAMILIES and cc:
        return f"{name[5:]}-{cc}"
    if name == "test_every_registered_routine_is_exercised":
        return "conv-gcc"  # generates every family's gcc project; conv's is the one that takes long
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        group = xdist_group_of(item.nodeid, dict(callspec.params) if callspec else {})
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
