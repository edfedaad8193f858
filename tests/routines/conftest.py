"""Session-wide builds of the routine-test families: each family is generated once and compiled once
per compiler, however many of its cases run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from routine_cases import FAMILIES
from routine_kit import FamilyGraph, build_family, run_sanitized_program, run_shared, write

from codegen import reference


class FamilyBuilds:
    def __init__(self, root: Path):
        self.root = root
        self._graphs: dict[str, FamilyGraph] = {}
        self._references: dict[str, dict[str, np.ndarray]] = {}
        self._projects: dict[tuple[str, str], Path] = {}
        self._results: dict[tuple[str, str, str], dict[str, np.ndarray]] = {}

    def graph(self, family: str) -> FamilyGraph:
        if family not in self._graphs:
            self._graphs[family] = build_family(family, FAMILIES[family], seed=len(family))
        return self._graphs[family]

    def reference(self, family: str) -> dict[str, np.ndarray]:
        if family not in self._references:
            fg = self.graph(family)
            self._references[family] = reference.run(fg.graph, fg.inputs)
        return self._references[family]

    def project(self, family: str, variant: str = "gcc") -> Path:
        """The generated project (one per compiler, so that the two libraries never share symbol names)."""
        key = (family, variant)
        if key not in self._projects:
            self._projects[key] = write(self.graph(family), self.root, f"{family}_{variant}")
        return self._projects[key]

    def results(self, family: str, cc: str, how: str = "shared") -> dict[str, np.ndarray]:
        key = (family, cc, how)
        if key not in self._results:
            fg = self.graph(family)
            if how == "shared":
                self._results[key] = run_shared(self.project(family, cc), cc, fg)
            else:
                project = self.project(family, f"{cc}_sanitized")
                self._results[key] = run_sanitized_program(project, cc, fg, self.root / f"{family}_{cc}_io")
        return self._results[key]


@pytest.fixture(scope="session")
def builds(tmp_path_factory) -> FamilyBuilds:
    return FamilyBuilds(tmp_path_factory.mktemp("routine_families"))
