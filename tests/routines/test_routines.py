"""Every routine against codegen.reference on edge shapes, compiled with gcc and clang (-Werror).

One parametrised test per layer family; each family is one graph, compiled once per compiler.
"""

from __future__ import annotations

import pytest
from routine_cases import FAMILIES
from routine_kit import COMPILERS, Case, assert_close, case_ids, family_failures, routines_used, tolerance_of

from codegen.routines import REGISTRY


def params(family: str) -> list:
    cases = FAMILIES[family]
    return [pytest.param(case, id=cid, marks=[pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else [])
            for case, cid in zip(cases, case_ids(cases), strict=True)]


def check(builds, family: str, cc: str, case: Case) -> None:
    """Every routine instance of the case (one path each in the family graph) equals the reference."""
    fg = builds.graph(family)
    got, want = builds.results(family, cc), builds.reference(family)
    for variant in fg.variants[case.id]:
        assert_close(f"{case.id} [{variant.label}]", got[variant.output], want[variant.output],
                     tolerance_of(variant.label))


@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("case", params("conv"))
def test_conv(builds, cc, case):
    check(builds, "conv", cc, case)


@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("case", params("gemm"))
def test_gemm(builds, cc, case):
    check(builds, "gemm", cc, case)


@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("case", params("elementwise"))
def test_elementwise(builds, cc, case):
    check(builds, "elementwise", cc, case)


@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("case", params("data"))
def test_data(builds, cc, case):
    check(builds, "data", cc, case)


@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("case", params("normalization"))
def test_normalization(builds, cc, case):
    check(builds, "normalization", cc, case)


@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("case", params("pool"))
def test_pool(builds, cc, case):
    check(builds, "pool", cc, case)


@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_under_sanitizers(builds, family, cc):
    """The whole family as a program (example/main.c on raw float32 files) with ASan and UBSan."""
    results = builds.results(family, cc, "sanitized")
    failures = family_failures(FAMILIES[family], builds.graph(family), results, builds.reference(family))
    assert not failures, "\n".join(failures)


def test_every_registered_routine_is_exercised(builds):
    """On the host; the NEON routines are exercised under qemu by test_neon.py."""
    used = set()
    for family in FAMILIES:
        used |= routines_used(builds.project(family))
    missing = sorted({r.name for r in REGISTRY if "neon" not in r.requires} - used)
    assert not missing, (f"no case in tests/routines/routine_cases.py is accepted by {missing} on the host target: "
                         "add cases these routines accept (or the ISA they need to targets/host.toml)")
