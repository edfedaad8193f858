"""The edge cases of every layer family (XNNPACK-tester style). One list per routines/ module."""

from __future__ import annotations

import itertools

from routine_kit import ACTIVATIONS, EPILOGUE_ONLY, Case, Const, In, Ref, binary, conv, dense, pool

from codegen.ir import NO_ACTIVATION, Activation, Layout


def conv_cases() -> list[Case]:
    cases = [
        conv("1x1_spatial_1x1_kernel", (1, 3, 1, 1), 4, 1),
        conv("1x1_spatial_3x3_pad1", (1, 3, 1, 1), 4, 3, pads=(1, 1, 1, 1)),
        # matrix-vector products (the 1-row GEMM tiles): a squeeze-excite 1x1 after pooling, a channel tail,
        # and two pixels in each of three images
        conv("gemv_70_to_77", (1, 70, 1, 1), 77, 1, act=ACTIVATIONS["hard_swish"], scale=2.0),
        conv("two_pixels_batch3", (3, 9, 1, 2), 19, 1),
        conv("odd_7x13", (1, 2, 7, 13), 3, 3),
        conv("prime_13x7_pad1_batch2", (2, 3, 13, 7), 5, 3, pads=(1, 1, 1, 1)),
        conv("stride2_odd_7", (1, 3, 7, 7), 4, 3, strides=(2, 2)),
        conv("stride2_odd_13_pad1", (1, 2, 13, 13), 3, 3, strides=(2, 2), pads=(1, 1, 1, 1)),
        conv("stride2_k2_odd_7x9", (1, 2, 7, 9), 2, 2, strides=(2, 2)),
        conv("stride_1x3", (1, 2, 7, 11), 3, 3, strides=(1, 3), pads=(1, 1, 1, 1)),
        conv("stride3_k1", (1, 2, 7, 7), 2, 1, strides=(3, 3)),
        conv("stride_larger_than_kernel_pad", (1, 2, 8, 8), 2, 2, strides=(3, 3), pads=(1, 1, 1, 1)),
        conv("dilation2", (1, 2, 9, 9), 3, 3, dilations=(2, 2)),
        conv("dilation2_pad2", (1, 2, 7, 8), 3, 3, dilations=(2, 2), pads=(2, 2, 2, 2)),
        conv("dilation_2x1_stride2_asym", (1, 2, 11, 9), 2, 3, dilations=(2, 1), strides=(2, 2), pads=(1, 0, 2, 1)),
        conv("dilation3_k2", (1, 1, 10, 10), 2, 2, dilations=(3, 3), pads=(1, 2, 1, 2)),
        conv("asym_pads", (1, 2, 6, 5), 3, 3, pads=(0, 1, 2, 3)),
        conv("asym_pads_bottom_right", (1, 1, 5, 5), 2, 2, pads=(0, 0, 1, 1)),
        conv("asym_pads_top_left", (1, 2, 5, 6), 2, 2, pads=(1, 1, 0, 0), strides=(2, 2)),
        conv("pads_larger_than_kernel", (1, 2, 4, 4), 2, 2, pads=(3, 2, 3, 2)),
        conv("group2", (1, 4, 6, 6), 6, 3, group=2, pads=(1, 1, 1, 1)),
        conv("group3_stride2_dilation2", (2, 6, 11, 10), 9, 3, group=3, strides=(2, 2), dilations=(2, 2),
             pads=(1, 2, 0, 1)),
        conv("depthwise", (1, 5, 7, 7), 5, 3, group=5, pads=(1, 1, 1, 1)),
        conv("depthwise_stride2", (1, 8, 9, 9), 8, 3, group=8, strides=(2, 2), pads=(1, 1, 1, 1)),
        conv("depthwise_multiplier2", (1, 3, 6, 6), 6, 3, group=3),
        conv("depthwise_5x5_on_3x3", (1, 4, 3, 3), 4, 5, group=4, pads=(2, 2, 2, 2)),
        conv("channels1", (1, 1, 8, 8), 1, 3),
        conv("channels1_to_8", (1, 1, 5, 5), 8, 3, pads=(1, 1, 1, 1)),
        conv("to_1_channel", (1, 6, 4, 4), 1, 3, pads=(1, 1, 1, 1)),
        conv("kernel_larger_than_input", (1, 2, 3, 3), 3, 5, pads=(2, 2, 2, 2)),
        conv("kernel_larger_than_input_pad1", (1, 2, 3, 3), 3, 5, pads=(1, 1, 1, 1)),
        conv("kernel_1x5", (1, 2, 4, 9), 3, (1, 5), pads=(0, 2, 0, 2)),
        conv("kernel_5x1_stride_2x1", (1, 2, 9, 4), 3, (5, 1), strides=(2, 1)),
        conv("kernel_covers_input", (1, 3, 5, 7), 2, (5, 7)),
        conv("batch3_no_bias", (3, 2, 5, 5), 4, 3, bias=False),
        # stems: rows wide enough for whole pixel tiles on the unchecked path, a partial tile, and output
        # channels that fill several vectors and end in a partial one
        conv("stem_3x3s2_3_to_20", (1, 3, 9, 37), 20, 3, strides=(2, 2), pads=(0, 0, 1, 1),
             act=ACTIVATIONS["hard_swish"]),
        conv("stem_3x3_pad1_3_to_16", (2, 3, 5, 27), 16, 3, pads=(1, 1, 1, 1), act=ACTIVATIONS["relu6"]),
        conv("stem_7x7s2_3_to_33", (1, 3, 11, 40), 33, 7, strides=(2, 2), pads=(3, 3, 3, 3), bias=False),
        conv("stem_dilated_4_to_9", (1, 4, 7, 30), 9, 3, dilations=(2, 2), pads=(2, 1, 2, 3)),
        conv("long_accumulation", (1, 16, 5, 5), 8, 3, pads=(1, 1, 1, 1)),
        conv("pointwise_stride2", (1, 8, 7, 7), 4, 1, strides=(2, 2)),
        conv("1xN_input", (1, 2, 1, 9), 3, 3, pads=(1, 1, 1, 1)),
        # depthwise rows: several channel vectors plus a tail, interior and border windows
        conv("depthwise_wide_37", (1, 37, 10, 9), 37, 3, group=37, pads=(1, 1, 1, 1)),
        conv("depthwise_5x5_stride2_24", (1, 24, 11, 12), 24, 5, group=24, strides=(2, 2), pads=(2, 2, 2, 2),
             act=ACTIVATIONS["hard_swish"], scale=2.0),
        # vector lanes and their tails in the Winograd transforms (C, M not multiples of the width)
        conv("wide_channels_19_to_37", (1, 19, 9, 11), 37, 3, pads=(1, 1, 1, 1)),
        # more tiles than one Winograd block holds (and a last, partial block)
        conv("many_tiles_42x38", (1, 20, 42, 38), 21, 3, pads=(1, 1, 1, 1), act=ACTIVATIONS["relu6"], scale=2.0),
        # too few tiles to share by blocks: the threads split Winograd's weight panels and output channels instead
        # (several panels, the last one partial, a channel tail)
        conv("few_tiles_wide_100", (1, 24, 6, 5), 100, 3, pads=(1, 1, 1, 1), act=ACTIVATIONS["relu"]),
        # blocked layouts (NCHW16c ...): full register tiles and edge chunks along a wide row with stride, dilation
        # and asymmetric pads; partial channel blocks in and out; an activation that does not keep zero at zero
        conv("blocked_wide_stride2_dilation2", (2, 17, 9, 40), 18, 3, strides=(2, 2), dilations=(2, 2),
             pads=(2, 1, 1, 3), act=ACTIVATIONS["hard_sigmoid"]),
    ]
    for name, act in {**ACTIVATIONS, **EPILOGUE_ONLY}.items():
        cases.append(conv(f"act_{name}", (1, 3, 6, 6), 4, 3, pads=(1, 1, 1, 1), act=act, scale=2.0))
    # EfficientNet's SiLU in the vector epilogues: a 1x1 (GEMM), a depthwise and a stem
    cases += [conv("silu_1x1_16_to_40", (1, 16, 5, 7), 40, 1, act=EPILOGUE_ONLY["silu"], scale=3.0),
              conv("silu_depthwise_5x5", (1, 20, 9, 9), 20, 5, group=20, pads=(2, 2, 2, 2), act=EPILOGUE_ONLY["silu"]),
              conv("silu_stem_3_to_32", (1, 3, 9, 35), 32, 3, strides=(2, 2), pads=(0, 0, 1, 1),
                   act=EPILOGUE_ONLY["silu"], scale=3.0)]
    cases.append(conv("act_relu6_depthwise_stride2", (1, 4, 7, 7), 4, 3, group=4, strides=(2, 2),
                      pads=(1, 1, 1, 1), act=ACTIVATIONS["relu6"], scale=4.0))
    # a fused residual add (ResNet's 1x1 projection + shortcut, then ReLU): full panels, a partial last panel,
    # a remainder of rows, strided and padded (implicit GEMM) layers, batches, no bias
    cases += [
        conv("residual_1x1_relu", (1, 16, 7, 9), 32, 1, residual=True, act=ACTIVATIONS["relu"]),
        conv("residual_1x1_odd_channels_37", (1, 11, 5, 5), 37, 1, residual=True),
        conv("residual_1x1_wide_130", (1, 8, 3, 3), 130, 1, residual=True, act=ACTIVATIONS["relu6"], bias=False),
        conv("residual_3x3_pad1_batch2", (2, 5, 6, 7), 19, 3, pads=(1, 1, 1, 1), residual=True,
             act=ACTIVATIONS["hard_swish"]),
        conv("residual_1x1_stride2", (1, 12, 9, 9), 24, 1, strides=(2, 2), residual=True, act=ACTIVATIONS["sigmoid"]),
        # long sums run in K blocks (codegen.routines.conv.k_block): several blocks and a partial last one
        conv("k_blocks_1x1_800", (1, 800, 3, 5), 37, 1, residual=True, act=ACTIVATIONS["relu"]),
        conv("k_blocks_3x3_pad1_90", (1, 90, 5, 4), 20, 3, pads=(1, 1, 1, 1), act=ACTIVATIONS["hard_swish"]),
    ]
    return cases


def gemm_cases() -> list[Case]:
    cases = [
        dense("dense_1x1", (1, 1), 1),
        dense("dense_bias", (3, 7), 5),
        dense("dense_no_bias", (2, 13), 11, bias=False),
        dense("dense_K1", (1, 1), 9),
        dense("dense_M1", (4, 6), 1),
        dense("dense_long_K", (2, 300), 3),
        dense("dense_batch8_prime", (8, 17), 13),
    ]
    for name, act in ACTIVATIONS.items():
        cases.append(dense(f"dense_act_{name}", (2, 9), 5, act=act))
    matmuls = [
        ("2d", (3, 4), (4, 5)),
        ("1x1", (1, 1), (1, 1)),
        ("1d_2d", (4,), (4, 5)),
        ("2d_1d", (3, 4), (4,)),
        ("1d_1d", (7,), (7,)),
        ("batched_a", (2, 3, 4), (4, 5)),
        ("batched_b", (3, 4), (2, 4, 5)),
        ("broadcast_both", (2, 1, 3, 4), (5, 4, 2)),
        ("broadcast_ones", (1, 3, 4), (2, 4, 1)),
        ("1d_batched_b", (4,), (2, 4, 3)),
        ("batched_a_1d", (2, 3, 4), (4,)),
        ("rank5", (2, 1, 3, 2, 3), (1, 2, 1, 3, 4)),
        ("batch_of_ones", (1, 1, 3, 4), (1, 4, 2)),
        ("long_K", (2, 200), (200, 3)),
    ]
    for name, a, b in matmuls:
        cases.append(Case(f"matmul_{name}", "matmul", [a, b]))
    cases += [
        Case("matmul_const_b_batched", "matmul", [(2, 3, 4), Const((2, 4, 5))]),
        Case("matmul_const_a", "matmul", [Const((3, 4)), (2, 4, 5)]),
        Case("matmul_same_operand", "matmul", [(4, 4), Ref(0)]),
    ]
    return cases


def elementwise_cases() -> list[Case]:
    cases = []
    for name, act in [("none", NO_ACTIVATION), *ACTIVATIONS.items()]:
        cases.append(Case(f"activation_{name}", "activation", [In((2, 3, 5), scale=4.0)], dict(activation=act)))
    cases += [
        Case("activation_scalar", "activation", [In((), scale=3.0)], dict(activation=Activation("sigmoid"))),
        Case("activation_single", "activation", [(1,)], dict(activation=Activation("relu"))),
        Case("activation_leaky_negative_slope", "activation", [(7,)], dict(activation=Activation("leaky_relu", -0.2))),
        Case("activation_large_sigmoid", "activation", [In((64,), scale=40.0)],
             dict(activation=Activation("sigmoid"))),
        # |x| far past where e^x over- or underflows: exactly 0 and 1 in the limits, never NaN
        Case("activation_huge_sigmoid_37", "activation", [In((37,), scale=300.0)],
             dict(activation=Activation("sigmoid"))),
        Case("activation_leaky_slope_above_one", "activation", [(19,)], dict(activation=Activation("leaky_relu", 1.5))),
        # min > max: every value becomes max (ONNX Clip, numpy.clip); found by the fuzz test
        Case("activation_clip_min_above_max_37", "activation", [In((37,), scale=4.0)],
             dict(activation=Activation("clip", 1.0, -1.0))),
    ]
    # vector kernels: a vector of each ISA (16, 8, 4 floats), less, more, odd and prime sizes, several vectors
    for size in (3, 4, 8, 16, 17, 37, 67):
        cases.append(Case(f"activation_sigmoid_{size}", "activation", [In((size,), scale=8.0)],
                          dict(activation=Activation("sigmoid"))))
    for name, act in [("none", NO_ACTIVATION), *ACTIVATIONS.items()]:
        cases.append(Case(f"activation_{name}_image_67", "activation", [In((1, 67, 3, 1), scale=4.0)],
                          dict(activation=act)))
    for op in ("add", "sub", "mul", "div"):
        cases += [
            binary(f"{op}_same_shape", op, (2, 3, 4, 5), (2, 3, 4, 5)),
            binary(f"{op}_nc11_by_nchw", op, (2, 3, 1, 1), (2, 3, 4, 5)),
            binary(f"{op}_nchw_by_nc11", op, (2, 3, 4, 5), (2, 3, 1, 1)),
            binary(f"{op}_scalar_left", op, (), (2, 3)),
            binary(f"{op}_scalar_right", op, (2, 3), ()),
            binary(f"{op}_outer", op, (5, 1), (1, 4)),
        ]
    cases += [
        binary("add_c11_by_nchw", "add", (3, 1, 1), (2, 3, 4, 5)),
        binary("div_scalar_both", "div", (), ()),
        binary("add_one_vs_vector", "add", (1,), (5,)),
        binary("sub_outer_reversed", "sub", (1, 4), (5, 1)),
        binary("div_mixed", "div", (2, 1, 3), (1, 4, 1)),
        binary("add_rank5", "add", (2, 1, 3, 1, 2), (1, 4, 1, 5, 1)),
        binary("add_row", "add", (3, 4), (4,)),
        binary("mul_column", "mul", (3, 4), (3, 1)),
        binary("mul_trailing_one", "mul", (2, 3, 1), (2, 3, 5)),
        binary("mul_same_tensor", "mul", (3, 5), Ref(0)),
        binary("add_const_c11", "add", (2, 3, 4, 4), Const((3, 1, 1))),
        binary("mul_const_scalar", "mul", (2, 5), Const(())),
        binary("sub_const_left", "sub", Const((4, 1)), (4, 4)),
        binary("div_const_right", "div", (2, 6), Const((6,))),
        binary("add_nhwc_channel", "add", (1, 4, 4, 3), (3,)),
    ]
    # vector kernels: contiguous operands of vector sizes and around them; a per-channel operand (the
    # squeeze-excite multiply: along the innermost axis in NHWC, a broadcast per row in NCHW); scalars
    for size in (3, 4, 8, 16, 37):
        cases.append(binary(f"add_same_{size}", "add", (size,), (size,)))
    cases += [
        binary("mul_same_image_prime", "mul", (2, 3, 5, 7), (2, 3, 5, 7)),
        binary("mul_se_24", "mul", (1, 24, 5, 7), (1, 24, 1, 1)),
        binary("mul_se_37_left", "mul", (1, 37, 1, 1), (1, 37, 3, 5)),
        binary("add_channel_19", "add", (1, 19, 5, 7), (1, 19, 1, 1)),
        binary("div_channel_16_batch2", "div", (2, 16, 3, 3), (1, 16, 1, 1)),
        binary("sub_channel_8_from_channel", "sub", (1, 8, 1, 1), (1, 8, 2, 9)),
        binary("mul_const_channel_40", "mul", (1, 40, 3, 3), Const((1, 40, 1, 1))),
        binary("mul_scalar_37", "mul", (37,), ()),
        binary("div_scalar_by_67", "div", (), (67,)),
        binary("sub_scalar_image", "sub", (1, 17, 3, 3), ()),
        binary("add_rows_17x33", "add", (17, 33), (33,)),
        binary("add_se_act_sigmoid_large", "add", In((1, 16, 3, 3), scale=100.0), (1, 16, 1, 1),
               act=ACTIVATIONS["sigmoid"]),
        binary("mul_se_act_hard_swish", "mul", In((1, 21, 4, 4), scale=3.0), (1, 21, 1, 1),
               act=ACTIVATIONS["hard_swish"]),
        binary("add_same_act_leaky_37", "add", (37,), (37,), act=ACTIVATIONS["leaky_relu"]),
        # a rank-3 operand stays row-major: in NHWC its channels are strided, which only the flat routines take
        binary("add_chw_to_image", "add", (2, 3, 4, 5), (3, 4, 5)),
    ]
    for name, act in ACTIVATIONS.items():
        cases.append(binary(f"binary_act_{name}", "add", In((2, 3, 4), scale=3.0), (3, 1), act=act))
    for name, shape in [("nchw", (2, 3, 5, 5)), ("rank2", (2, 3)), ("rank3", (1, 1, 7)), ("rank5", (1, 4, 2, 3, 2)),
                        ("all_ones", (1, 1, 1, 1)),
                        # channel periods against the vector width (lcm(C, lanes)): a stem's 3, an odd 5, 17 (a
                        # period of 272 floats), 100; totals that end in a partial vector and mid-period
                        ("stem", (1, 3, 7, 5)), ("c5", (2, 5, 3, 3)), ("c17", (1, 17, 3, 1)), ("c100", (1, 100, 1, 3)),
                        ("c24", (1, 24, 2, 3))]:
        c = shape[1]
        cases.append(Case(f"scale_shift_{name}", "scale_shift", [shape, Const((c,)), Const((c,))],
                          dict(activation=NO_ACTIVATION)))
    for name, act in ACTIVATIONS.items():
        cases.append(Case(f"scale_shift_act_{name}", "scale_shift", [In((2, 3, 4, 4), scale=3.0), Const((3,)),
                                                                     Const((3,))], dict(activation=act)))
    return cases


def data_cases() -> list[Case]:
    cases = [
        Case("copy_vector", "copy", [(5,)]),
        Case("copy_rank3", "copy", [(2, 3, 4)]),
        Case("reshape_flatten", "reshape", [(2, 3, 4)], dict(shape=(4, 6))),
        Case("reshape_to_scalar", "reshape", [(1,)], dict(shape=())),
        Case("reshape_add_ones", "reshape", [(6,)], dict(shape=(1, 2, 3, 1))),
        Case("reshape_flatten_image", "reshape", [(2, 3, 5, 7)], dict(shape=(2, 105))),
        Case("reshape_image_to_rank3", "reshape", [(1, 4, 3, 3)], dict(shape=(4, 3, 3))),
        Case("reshape_pooled_image", "reshape", [(2, 8, 1, 1)], dict(shape=(2, 8))),
        Case("copy_image", "copy", [(2, 3, 5, 7)]),
    ]
    # adapt routines on their own: several channel blocks and a partial one, a batch
    for blocked in (Layout.NCHW16C, Layout.NCHW8C, Layout.NCHW4C):
        for native in (Layout.NCHW, Layout.NHWC):
            shape = (2, 2 * blocked.block + 3, 3, 5)
            cases.append(Case(f"layout_{native.value}_to_{blocked.value}", "layout", [shape],
                              dict(src=native, dst=blocked)))
            cases.append(Case(f"layout_{blocked.value}_to_{native.value}", "layout", [shape],
                              dict(src=blocked, dst=native)))
    perms = [((3, 4), (1, 0))]
    perms += [((2, 3, 4), p) for p in itertools.permutations(range(3)) if p != (0, 1, 2)]
    perms += [((2, 3, 4, 5), p) for p in [(0, 2, 3, 1), (0, 3, 1, 2), (3, 2, 1, 0), (1, 0, 2, 3), (0, 1, 3, 2),
                                          (2, 0, 3, 1)]]
    perms += [((1, 3, 1, 5), (0, 2, 1, 3)), ((2, 1, 3), (2, 0, 1)), ((1, 7), (1, 0))]
    perms += [((2, 3, 1, 4, 2), p) for p in [(4, 2, 0, 3, 1), (0, 1, 2, 4, 3), (4, 3, 2, 1, 0), (1, 0, 2, 3, 4)]]
    for shape, perm in perms:
        name = "x".join(map(str, shape)) + "_" + "".join(map(str, perm))
        cases.append(Case(f"transpose_{name}", "transpose", [shape], dict(perm=perm)))
    for axis in range(4):
        sizes = [2, 3, 4, 5]
        a, b = list(sizes), list(sizes)
        a[axis], b[axis] = 1, 3
        cases.append(Case(f"concat_axis{axis}", "concat", [tuple(a), tuple(b), tuple(sizes)], dict(axis=axis)))
    cases += [
        Case("concat_rank1", "concat", [(3,), (1,), (4,)], dict(axis=0)),
        Case("concat_rank2_axis0", "concat", [(2, 3), (4, 3)], dict(axis=0)),
        Case("concat_rank2_axis1", "concat", [(2, 3), (2, 1)], dict(axis=1)),
        Case("concat_single_input", "concat", [(2, 3)], dict(axis=1)),
        Case("concat_same_tensor", "concat", [(2, 3, 2), Ref(0)], dict(axis=1)),
        Case("concat_with_constant", "concat", [(1, 2, 3, 3), Const((1, 4, 3, 3))], dict(axis=1)),
        Case("concat_tiny", "concat", [(1,), (1,)], dict(axis=0)),
        Case("concat_rank5_axis4", "concat", [(1, 2, 1, 2, 3), (1, 2, 1, 2, 1)], dict(axis=4)),
    ]
    pads = [
        ("constant_spatial", (1, 2, 4, 5), (0, 0, 1, 2, 0, 0, 2, 1), "constant", 0.0),
        ("constant_value", (3, 4), (1, 0, 2, 3), "constant", 1.5),
        ("constant_batch_channel", (2, 2, 3, 3), (1, 1, 0, 0, 0, 2, 1, 0), "constant", -2.0),
        ("constant_rank1", (5,), (3, 1), "constant", 0.25),
        ("constant_one_side", (2, 3, 4), (0, 0, 0, 0, 0, 3), "constant", 0.0),
        ("reflect_spatial_max", (1, 1, 4, 5), (0, 0, 3, 4, 0, 0, 3, 4), "reflect", 0.0),
        ("reflect_rank2", (3, 4), (1, 2, 2, 1), "reflect", 0.0),
        ("reflect_all_axes", (3, 4, 2), (1, 2, 1, 2, 3, 1), "reflect", 0.0),
        ("edge_spatial", (1, 2, 3, 4), (0, 0, 2, 1, 0, 0, 1, 3), "edge", 0.0),
        ("edge_size1_big_pad", (1, 1, 1, 3), (0, 0, 5, 2, 0, 0, 4, 3), "edge", 0.0),
        ("edge_rank1", (4,), (2, 5), "edge", 0.0),
        ("wrap_rank2", (3, 4), (1, 2, 2, 3), "wrap", 0.0),
        ("wrap_spatial", (1, 2, 3, 3), (0, 0, 2, 1, 0, 0, 1, 2), "wrap", 0.0),
    ]
    for name, shape, p, mode, value in pads:
        cases.append(Case(f"pad_{name}", "pad", [shape], dict(pads=p, mode=mode, value=value)))
    return cases


def normalization_cases() -> list[Case]:
    cases = [Case(f"softmax_rank4_axis{axis}", "softmax", [In((2, 3, 4, 5), 3.0)], dict(axis=axis))
             for axis in range(4)]
    cases += [
        Case("softmax_rank1", "softmax", [(7,)], dict(axis=0)),
        Case("softmax_rank2_axis0", "softmax", [(3, 4)], dict(axis=0)),
        Case("softmax_rank2_axis1", "softmax", [(3, 4)], dict(axis=1)),
        Case("softmax_axis_of_size1", "softmax", [(2, 1, 3)], dict(axis=1)),
        Case("softmax_large_logits", "softmax", [In((3, 10), 50.0)], dict(axis=1)),
        Case("softmax_classifier", "softmax", [In((1, 1000), 5.0)], dict(axis=1)),
        Case("softmax_rank5_axis2", "softmax", [(2, 1, 3, 2, 2)], dict(axis=2)),
    ]
    # vector kernels: rows of a vector of each ISA (16, 8, 4 floats), less, more, primes; huge logits (exp
    # underflows for all but the largest); channels of an image (NHWC: the contiguous axis)
    for size in (1, 3, 4, 8, 16, 17, 37):
        cases.append(Case(f"softmax_rows_of_{size}", "softmax", [In((3, size), 4.0)], dict(axis=1)))
    cases += [
        Case("softmax_huge_logits_37", "softmax", [In((4, 37), 1000.0)], dict(axis=1)),
        Case("softmax_channels_37", "softmax", [In((1, 37, 3, 3), 3.0)], dict(axis=1)),
        Case("softmax_channels_16_batch2", "softmax", [In((2, 16, 2, 3), 3.0)], dict(axis=1)),
        Case("softmax_rank3_last_67", "softmax", [In((2, 2, 67), 3.0)], dict(axis=2)),
        # a strided axis, vectorised across its contiguous neighbours (NCHW channels): full vectors, partial ones
        Case("softmax_columns_of_16", "softmax", [In((5, 16), 4.0)], dict(axis=0)),
        Case("softmax_columns_of_8_rank3", "softmax", [In((2, 3, 8), 4.0)], dict(axis=1)),
        Case("softmax_nchw_channels_21x8x8", "softmax", [In((1, 21, 8, 8), 3.0)], dict(axis=1)),
        Case("softmax_nchw_channels_5x3x7_batch2", "softmax", [In((2, 5, 3, 7), 3.0)], dict(axis=1)),
        Case("softmax_huge_logits_columns_37", "softmax", [In((2, 6, 37), 1000.0)], dict(axis=1)),
    ]
    for size in (1, 2, 3, 4, 5):
        cases.append(Case(f"lrn_size{size}", "lrn", [(1, 6, 3, 3)], dict(size=size, alpha=1e-2, beta=0.75, bias=1.0)))
    cases += [
        Case("lrn_one_channel", "lrn", [(2, 1, 4, 4)], dict(size=3, alpha=1e-1, beta=0.75, bias=1.0)),
        Case("lrn_size_larger_than_channels", "lrn", [In((1, 3, 2, 5), 3.0)],
             dict(size=7, alpha=0.5, beta=0.5, bias=2.0)),
        Case("lrn_rank3", "lrn", [(2, 5, 4)], dict(size=3, alpha=1e-3, beta=1.0, bias=0.5)),
        Case("lrn_rank2", "lrn", [(2, 7)], dict(size=5, alpha=1e-4, beta=0.75, bias=1.0)),
    ]
    return cases


def pool_cases() -> list[Case]:
    cases = []
    for mode in ("max", "avg"):
        cases += [
            pool(f"{mode}_1x1_input", mode, (1, 2, 1, 1), (1, 1), (1, 1)),
            pool(f"{mode}_k2s2_even", mode, (1, 2, 6, 8), (2, 2), (2, 2)),
            pool(f"{mode}_k2s2_odd", mode, (1, 2, 7, 7), (2, 2), (2, 2)),
            pool(f"{mode}_k2s2_odd_ceil", mode, (1, 2, 7, 7), (2, 2), (2, 2), ceil_mode=True),
            pool(f"{mode}_k3s2_8x8_ceil", mode, (2, 3, 8, 8), (3, 3), (2, 2), ceil_mode=True),
            pool(f"{mode}_k3s2_pad1", mode, (1, 2, 7, 9), (3, 3), (2, 2), (1, 1, 1, 1)),
            pool(f"{mode}_k3s2_pad1_ceil", mode, (1, 2, 8, 8), (3, 3), (2, 2), (1, 1, 1, 1), ceil_mode=True),
            pool(f"{mode}_k3s1_pad1_prime13", mode, (1, 1, 13, 13), (3, 3), (1, 1), (1, 1, 1, 1)),
            pool(f"{mode}_asym_pads", mode, (1, 2, 6, 7), (3, 2), (2, 3), (1, 0, 0, 1)),
            pool(f"{mode}_asym_pads_ceil", mode, (2, 1, 7, 9), (3, 2), (2, 3), (1, 0, 0, 1), ceil_mode=True),
            pool(f"{mode}_whole_input", mode, (1, 3, 5, 7), (5, 7), (1, 1)),
            pool(f"{mode}_kernel_larger_than_input", mode, (1, 2, 3, 3), (5, 5), (1, 1), (2, 2, 2, 2)),
            pool(f"{mode}_stride_larger_than_kernel", mode, (1, 2, 9, 9), (2, 2), (3, 3), ceil_mode=True),
            pool(f"{mode}_non_square", mode, (1, 2, 5, 12), (1, 3), (1, 3)),
            pool(f"{mode}_dilation2", mode, (1, 2, 9, 9), (3, 3), (1, 1), dilations=(2, 2)),
            pool(f"{mode}_dilation2_stride2_pad_ceil", mode, (1, 1, 10, 9), (3, 2), (2, 2), (1, 0, 1, 1),
                 dilations=(2, 3), ceil_mode=True),
        ]
    for ceil in (False, True):
        suffix = "_ceil" if ceil else ""
        cases += [
            pool(f"avg_count_pad_k3s2{suffix}", "avg", (1, 2, 8, 8), (3, 3), (2, 2), (1, 1, 1, 1), ceil_mode=ceil,
                 count_include_pad=True),
            pool(f"avg_count_pad_asym{suffix}", "avg", (2, 1, 7, 9), (3, 2), (2, 3), (1, 0, 0, 1), ceil_mode=ceil,
                 count_include_pad=True),
            pool(f"avg_count_pad_no_pads{suffix}", "avg", (1, 2, 7, 7), (2, 2), (2, 2), ceil_mode=ceil,
                 count_include_pad=True),
            pool(f"avg_count_pad_big_kernel{suffix}", "avg", (1, 2, 3, 3), (5, 5), (1, 1), (2, 2, 2, 2),
                 ceil_mode=ceil, count_include_pad=True),
        ]
    # vector kernels (NHWC, across channels): a vector of each ISA, less, more, primes, several blocks of vectors,
    # padding (both ways of counting it), strides, dilations, batches split across threads by rows
    cases += [
        pool("max_c16_k3s2_pad1", "max", (1, 16, 7, 7), (3, 3), (2, 2), (1, 1, 1, 1)),
        pool("avg_c8_k2s2", "avg", (1, 8, 6, 6), (2, 2), (2, 2)),
        pool("max_c4_k2s1", "max", (1, 4, 5, 5), (2, 2), (1, 1)),
        pool("avg_c37_k3s2_pad1", "avg", (1, 37, 9, 9), (3, 3), (2, 2), (1, 1, 1, 1)),
        pool("avg_c37_k3s2_pad1_count_pad_ceil", "avg", (1, 37, 8, 8), (3, 3), (2, 2), (1, 1, 1, 1), ceil_mode=True,
             count_include_pad=True),
        pool("max_c67_k3s1_pad1_batch2", "max", (2, 67, 5, 5), (3, 3), (1, 1), (1, 1, 1, 1)),
        pool("avg_c131_asym_pads_count_pad", "avg", (1, 131, 7, 9), (3, 2), (2, 3), (1, 0, 0, 1),
             count_include_pad=True),
        pool("max_c19_dilation2_stride2_pad_ceil", "max", (1, 19, 10, 9), (3, 2), (2, 2), (1, 0, 1, 1),
             dilations=(2, 3), ceil_mode=True),
        pool("avg_c23_kernel_larger_than_input", "avg", (1, 23, 3, 3), (5, 5), (1, 1), (2, 2, 2, 2)),
        pool("max_c64_whole_input", "max", (1, 64, 3, 4), (3, 4), (1, 1)),
    ]
    for name, shape in [("1x1", (1, 1, 1, 1)), ("prime", (2, 3, 7, 13)), ("1xN", (1, 5, 1, 9)),
                        ("rank3", (2, 3, 5)), ("rank5", (1, 2, 3, 2, 2)), ("big_plane", (1, 2, 32, 32)),
                        ("c4", (1, 4, 3, 3)), ("c8", (1, 8, 2, 2)), ("c16", (1, 16, 3, 1)), ("c37", (1, 37, 3, 5)),
                        ("c67_batch2", (2, 67, 2, 3)), ("c131_1x1", (1, 131, 1, 1)), ("c256_7x7", (1, 256, 7, 7))]:
        cases.append(Case(f"global_avgpool_{name}", "global_avgpool", [shape]))
    reduces = [
        ((2, 3, 4, 5), (0,), False), ((2, 3, 4, 5), (1,), True), ((2, 3, 4, 5), (3,), False),
        ((2, 3, 4, 5), (2, 3), False), ((2, 3, 4, 5), (2, 3), True), ((2, 3, 4, 5), (1, 3), True),
        ((2, 3, 4, 5), (0, 1, 2, 3), False), ((2, 3, 4, 5), (0, 2), True), ((2, 3, 4), (1,), False),
        ((7,), (0,), False), ((1, 1, 5), (0, 1), True), ((3, 1, 4), (1,), False),
    ]
    for shape, axes, keep in reduces:
        name = "x".join(map(str, shape)) + "_axes" + "".join(map(str, axes)) + ("_keep" if keep else "")
        cases.append(Case(f"reduce_{name}", "reduce", [shape], dict(op="mean", axes=axes, keepdims=keep)))
    return cases


FAMILIES = {
    "conv": conv_cases(),
    "gemm": gemm_cases(),
    "elementwise": elementwise_cases(),
    "data": data_cases(),
    "normalization": normalization_cases(),
    "pool": pool_cases(),
}
