"""Vector ISAs as data: what one template needs to emit the same kernel for AVX-512, AVX2 or NEON.

Each entry gives the vector type, its width in floats, the intrinsics as format strings,
the header to include, and the ISA features a target must have. A template written
against these names produces one instance per ISA (XNNPACK's way: one template, many
micro-kernels).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Vector:
    isa: str  # the routine's ISA field: what the target must list
    requires: frozenset[str]  # every feature the code uses
    header: str
    type: str
    width: int  # floats per vector
    load: str  # {p}
    store: str  # {p} {v}
    set1: str  # {x}
    zero: str
    fma: str  # {a} * {b} + {c}
    add: str
    sub: str  # {a} - {b}
    mul: str
    # max/min keep a NaN of {a} (the data; {b} a constant or a second operand whose NaN may be dropped): x86
    # returns the second operand when either is NaN, so its operands are swapped, which costs nothing.
    max: str
    min: str
    # max of {a} (a running max) and {b} (the next value), NaN if either is: max pooling. One op on NEON,
    # a compare (off the running max's dependency chain) and a masked max or blend on x86.
    max_nan: str
    # For the vector exp (templates/simd.j2) and the element-wise kernels:
    div: str  # {a} / {b}
    int_type: str  # the 32-bit integer vector of the same width
    cvt_int: str  # {a}: float -> int32, rounded to nearest
    cvt_float: str  # {a}: int32 -> float
    add_int: str  # {a} + {b}, int32 lanes
    set1_int: str  # {x}
    shl_int: str  # {a} << {n} (n a constant), int32 lanes
    bits_float: str  # {a}: int32 lanes reinterpreted as float bits
    # The first {n} (0 < n < width, run time) floats at {p}, the other lanes 0, touching no memory past them;
    # and storing the first {n} lanes of {v}. Masked loads and stores (their masked-off lanes cannot fault);
    # empty where the ISA has none, and templates go through a stack copy instead.
    load_part: str
    store_part: str
    # {p}: a hint to fetch the cache line at address {p} (a const char *), which may lie past any array.
    prefetch: str
    # Features of a wider ISA on the same cores: compute-bound kernels (GEMM, Winograd, direct convolution)
    # then run at most half as fast as their wider twins, so tuning skips them (Routine.superseded_by).
    outdone_by: frozenset[str] = frozenset()

    def __call__(self, op: str, **args: str) -> str:
        return getattr(self, op).format(**args)

    @property
    def compute_fields(self) -> dict[str, object]:
        """routine_fields for compute-bound kernels, which a wider ISA on the target supersedes (with
        <stdint.h>, for prefetch addresses computed as integers)."""
        return {**self.routine_fields, "superseded_by": self.outdone_by, "headers": (self.header, "stdint.h")}

    @property
    def routine_fields(self) -> dict[str, object]:
        """The Routine fields every routine written for this ISA shares."""
        return {"isa": self.isa, "requires": self.requires, "headers": (self.header,)}


AVX512 = Vector(
    isa="avx512f", requires=frozenset({"avx512f"}), header="immintrin.h", type="__m512", width=16,
    prefetch="_mm_prefetch({p}, _MM_HINT_T0)",
    load="_mm512_loadu_ps({p})", store="_mm512_storeu_ps({p}, {v})", set1="_mm512_set1_ps({x})",
    zero="_mm512_setzero_ps()", fma="_mm512_fmadd_ps({a}, {b}, {c})", add="_mm512_add_ps({a}, {b})",
    sub="_mm512_sub_ps({a}, {b})",
    mul="_mm512_mul_ps({a}, {b})", max="_mm512_max_ps({b}, {a})", min="_mm512_min_ps({b}, {a})",
    max_nan="_mm512_mask_max_ps({b}, _mm512_cmp_ps_mask({b}, {b}, _CMP_ORD_Q), {b}, {a})",
    div="_mm512_div_ps({a}, {b})", int_type="__m512i", cvt_int="_mm512_cvtps_epi32({a})",
    cvt_float="_mm512_cvtepi32_ps({a})", add_int="_mm512_add_epi32({a}, {b})", set1_int="_mm512_set1_epi32({x})",
    shl_int="_mm512_slli_epi32({a}, {n})", bits_float="_mm512_castsi512_ps({a})",
    load_part="_mm512_maskz_loadu_ps((__mmask16)((1u << ({n})) - 1u), {p})",
    store_part="_mm512_mask_storeu_ps({p}, (__mmask16)((1u << ({n})) - 1u), {v})",
)
AVX2 = Vector(
    isa="avx2", requires=frozenset({"avx2", "fma"}), header="immintrin.h", type="__m256", width=8,
    outdone_by=frozenset({"avx512f"}), prefetch="_mm_prefetch({p}, _MM_HINT_T0)",
    load="_mm256_loadu_ps({p})", store="_mm256_storeu_ps({p}, {v})", set1="_mm256_set1_ps({x})",
    zero="_mm256_setzero_ps()", fma="_mm256_fmadd_ps({a}, {b}, {c})", add="_mm256_add_ps({a}, {b})",
    sub="_mm256_sub_ps({a}, {b})",
    mul="_mm256_mul_ps({a}, {b})", max="_mm256_max_ps({b}, {a})", min="_mm256_min_ps({b}, {a})",
    max_nan="_mm256_blendv_ps(_mm256_max_ps({b}, {a}), {b}, _mm256_cmp_ps({b}, {b}, _CMP_UNORD_Q))",
    div="_mm256_div_ps({a}, {b})", int_type="__m256i", cvt_int="_mm256_cvtps_epi32({a})",
    cvt_float="_mm256_cvtepi32_ps({a})", add_int="_mm256_add_epi32({a}, {b})", set1_int="_mm256_set1_epi32({x})",
    shl_int="_mm256_slli_epi32({a}, {n})", bits_float="_mm256_castsi256_ps({a})",
    load_part="_mm256_maskload_ps({p}, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)({n})), "
              "_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)))",
    store_part="_mm256_maskstore_ps({p}, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)({n})), "
               "_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), {v})",
)
NEON = Vector(
    isa="neon", requires=frozenset({"neon"}), header="arm_neon.h", type="float32x4_t", width=4,
    prefetch="__builtin_prefetch({p})",  # GCC and clang, the compilers of every NEON target
    load="vld1q_f32({p})", store="vst1q_f32({p}, {v})", set1="vdupq_n_f32({x})",
    zero="vdupq_n_f32(0.0f)", fma="vfmaq_f32({c}, {a}, {b})", add="vaddq_f32({a}, {b})", sub="vsubq_f32({a}, {b})",
    # vmaxq/vminq keep a NaN of either operand (vmaxnmq/vminnmq would drop it).
    mul="vmulq_f32({a}, {b})", max="vmaxq_f32({a}, {b})", min="vminq_f32({a}, {b})",
    max_nan="vmaxq_f32({a}, {b})",
    # vdivq_f32 and vcvtnq_s32_f32 are AArch64 (the NEON targets are all 64-bit).
    div="vdivq_f32({a}, {b})", int_type="int32x4_t", cvt_int="vcvtnq_s32_f32({a})",
    cvt_float="vcvtq_f32_s32({a})", add_int="vaddq_s32({a}, {b})", set1_int="vdupq_n_s32({x})",
    shl_int="vshlq_n_s32({a}, {n})", bits_float="vreinterpretq_f32_s32({a})",
    load_part="", store_part="",
)

VECTORS = (AVX512, AVX2, NEON)

# Activations that simd.j2's vactivation computes in vector registers (sigmoid and SiLU through its vector exp),
# so an epilogue applies them to its accumulators; the others go lane by lane through libm.
VECTOR_ACTIVATIONS = frozenset({"none", "relu", "clip", "leaky_relu", "hard_sigmoid", "hard_swish", "sigmoid", "silu",
                                "gelu_tanh", "mish"})
