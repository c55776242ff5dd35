"""LLVM vector operations for the numba kernels, through ``numba.extending``: the one adapter for them.

It holds two things: sixteen float32 lanes as one numba value (:data:`f32x16`, LLVM's ``<16 x float>``)
with its loads, stores and arithmetic, and the prefetches (:func:`prefetch`, :func:`prefetch_l2`), for
the dense kernel (:mod:`beambridge.xpcs.multitau.dense`); and an 8×8 transpose-add of pixel lanes into
rows (:func:`transpose_add8`) for the pass from the dense state to the bin sums
(:mod:`beambridge.xpcs.multitau.bins`).

**Sixteen lanes.** numba vectorises only a function's innermost loop, over array elements, so a value
that a loop carries from one iteration to the next (a multi-tau level's last eight elements, its
product sums) lives in memory and is loaded and stored every time. A :data:`f32x16` local is one SSA
value instead: LLVM keeps it in a register (one zmm with AVX-512, two ymm with AVX2, four xmm with SSE —
the same code runs on any x86-64 or ARM CPU, LLVM splits the vector to the hardware's width), and the
arithmetic below is one instruction per sixteen lanes.

Used by :mod:`beambridge.xpcs.multitau.dense` for integer counts: every value is an integer below
2**24, so float32 holds it exactly, and a fused multiply-add of such integers whose result stays below
2**24 is exact too (the caller bounds its sums and adds them into its uint64 sums before they could
reach 2**24). Float32 rather than uint32: a 16-lane float multiply-add is one instruction (two per
cycle on AVX-512 cores), a uint32 multiply is two and the add a third.

**The transpose.** numba vectorises loops, not blocks of statements (its SLP vectoriser is off), so an
8×8 transpose of pixel lanes into per-pixel rows, which the bin sums need, stays scalar when written as
numba loops. :func:`transpose_add8` writes it as LLVM vector operations (eight vector loads, 24
two-input shuffles, eight vector additions); LLVM lowers them to whatever the CPU has (one zmm register
per row with AVX-512, two ymm with AVX2, four xmm with SSE2).

Offsets are in elements of the array's flattened C order; arrays must be C-contiguous, and no bounds
are checked (like the kernels' ``boundscheck=False``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 16
"""Lanes of one :data:`f32x16` value."""

_F32 = ir.FloatType()
_VEC = ir.VectorType(_F32, LANES)


class F32x16Type(types.Type):
    """numba type of sixteen float32 lanes (LLVM ``<16 x float>``)."""

    def __init__(self) -> None:
        super().__init__(name="f32x16")


f32x16 = F32x16Type()


class Lanes:
    """What the functions below take and give, for type checkers: a :data:`f32x16` value, which exists
    only in compiled code."""


@register_model(F32x16Type)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm: Any, fe_type: Any) -> None:
        super().__init__(dmm, fe_type, _VEC)


def _supported(arr: Any) -> bool:
    return (
        isinstance(arr, types.Array)
        and arr.layout == "C"
        and (arr.dtype in types.unsigned_domain or arr.dtype in types.real_domain)
    )


def _lane_ptr(context: Any, builder: Any, arrty: Any, arr: Any, off: Any, width_t: Any) -> Any:
    """Pointer to ``arr.flat[off]`` as a pointer to 16 elements of ``width_t``."""
    ary = context.make_array(arrty)(context, builder, arr)
    ptr = builder.gep(ary.data, [off])
    return builder.bitcast(ptr, ir.VectorType(width_t, LANES).as_pointer())


def _elem_type(dtype: Any) -> Any:
    if isinstance(dtype, types.Float):
        return ir.DoubleType() if dtype.bitwidth == 64 else _F32
    return ir.IntType(dtype.bitwidth)


@intrinsic
def _vload(typingctx: Any, arr: Any, off: Any) -> Any:
    """Lanes ``arr.flat[off : off + 16]`` as float32 (unsigned integers converted, float64 rounded)."""
    if not _supported(arr) or not isinstance(off, types.Integer):
        return None
    dtype = arr.dtype

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        et = _elem_type(dtype)
        raw = builder.load(
            _lane_ptr(context, builder, sig.args[0], args[0], args[1], et), align=dtype.bitwidth // 8
        )
        if isinstance(dtype, types.Float):
            return raw if dtype.bitwidth == 32 else builder.fptrunc(raw, _VEC)
        return builder.uitofp(raw, _VEC)

    return f32x16(arr, off), codegen


def _store_operands(context: Any, builder: Any, sig: Any, args: Any) -> tuple[Any, Any, int]:
    """What a write of lanes ``v`` to ``arr.flat[off : off + 16]`` needs (``args``: arr, off, v): the
    pointer to the 16 elements, ``v`` converted to the array's element type (float64: widened; unsigned
    integers: truncated toward zero, exact for integers below 2**24) and the elements' alignment."""
    dtype = sig.args[0].dtype
    et = _elem_type(dtype)
    val = args[2]
    if not isinstance(dtype, types.Float):
        val = builder.fptoui(val, ir.VectorType(et, LANES))
    elif dtype.bitwidth != 32:
        val = builder.fpext(val, ir.VectorType(et, LANES))
    return _lane_ptr(context, builder, sig.args[0], args[0], args[1], et), val, dtype.bitwidth // 8


@intrinsic
def _vstore(typingctx: Any, arr: Any, off: Any, v: Any) -> Any:
    """``arr.flat[off : off + 16] = v`` (converted to the array's type: exact for integers below 2**24)."""
    if not _supported(arr) or not isinstance(off, types.Integer) or v != f32x16:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr, val, align = _store_operands(context, builder, sig, args)
        builder.store(val, ptr, align=align)
        return context.get_dummy_value()

    return types.void(arr, off, v), codegen


@intrinsic
def _vadd_into(typingctx: Any, arr: Any, off: Any, v: Any) -> Any:
    """``arr.flat[off : off + 16] += v`` in the array's own type (uint64 sums: an exact integer add)."""
    if not _supported(arr) or not isinstance(off, types.Integer) or v != f32x16:
        return None
    is_float = isinstance(arr.dtype, types.Float)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr, val, align = _store_operands(context, builder, sig, args)
        old = builder.load(ptr, align=align)
        builder.store(builder.fadd(old, val) if is_float else builder.add(old, val), ptr, align=align)
        return context.get_dummy_value()

    return types.void(arr, off, v), codegen


@intrinsic
def _vzero(typingctx: Any) -> Any:
    """Sixteen zeros."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return ir.Constant(_VEC, [0.0] * LANES)

    return f32x16(), codegen


@intrinsic
def _vadd(typingctx: Any, a: Any, b: Any) -> Any:
    """a + b, lane by lane."""
    if a != f32x16 or b != f32x16:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.fadd(args[0], args[1])

    return f32x16(a, b), codegen


@intrinsic
def _vfma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    """a · b + c, lane by lane, rounded once (``llvm.fma``)."""
    if a != f32x16 or b != f32x16 or c != f32x16:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        fnty = ir.FunctionType(_VEC, [_VEC, _VEC, _VEC])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.v16f32")
        return builder.call(fn, list(args))

    return f32x16(a, b, c), codegen


vload = cast("Callable[[np.ndarray, int], Lanes]", _vload)
vstore = cast("Callable[[np.ndarray, int, Lanes], None]", _vstore)
vadd_into = cast("Callable[[np.ndarray, int, Lanes], None]", _vadd_into)
vzero = cast("Callable[[], Lanes]", _vzero)
vadd = cast("Callable[[Lanes, Lanes], Lanes]", _vadd)
vfma = cast("Callable[[Lanes, Lanes, Lanes], Lanes]", _vfma)


def _prefetch_intrinsic(locality: int) -> Any:
    """An ``llvm.prefetch`` of the cache line of ``arr.flat[off]`` (read, data; ``locality`` 3: into all
    cache levels, 2: L2 and below). A hint only: never a fault, no bounds checked."""

    def typer(typingctx: Any, arr: Any, off: Any) -> Any:
        if not isinstance(arr, types.Array) or arr.layout != "C" or not isinstance(off, types.Integer):
            return None

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            ary = context.make_array(sig.args[0])(context, builder, args[0])
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch." + i8p.intrinsic_name)
            ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), i8p)
            builder.call(fn, [ptr, i32(0), i32(locality), i32(1)])
            return context.get_dummy_value()

        return types.void(arr, off), codegen

    return intrinsic(typer)


prefetch = cast("Callable[[np.ndarray, int], None]", _prefetch_intrinsic(3))
"""Ask for the line of ``arr.flat[off]`` in every cache level, ahead of its use."""
prefetch_l2 = cast("Callable[[np.ndarray, int], None]", _prefetch_intrinsic(2))
"""The same into L2 and below (for data read after what is in hand)."""


# The 8×8 transpose-add (the bin sums; see the module's docstring)

_STAGES: list[list[tuple[str, str, str, list[int]]]] = []
"""The transpose network: stages of ``(result, a, b, mask)`` two-input shuffles of 8-element vectors
``a0 … a7`` (the rows); after the last stage :data:`_COLUMN` names the vector holding column k."""


def _network() -> dict[int, str]:
    s1 = []
    for m in range(4):  # pairs of rows: interleave their even and their odd columns
        s1.append((f"lo{m}", f"a{2 * m}", f"a{2 * m + 1}", [0, 8, 2, 10, 4, 12, 6, 14]))
        s1.append((f"hi{m}", f"a{2 * m}", f"a{2 * m + 1}", [1, 9, 3, 11, 5, 13, 7, 15]))
    s2 = []
    for half in range(2):  # rows 0-3 and rows 4-7: columns {0,4} {2,6} (lo) and {1,5} {3,7} (hi)
        for kind in ("lo", "hi"):
            x, y = f"{kind}{2 * half}", f"{kind}{2 * half + 1}"
            s2.append((f"{kind}A{half}", x, y, [0, 1, 8, 9, 4, 5, 12, 13]))
            s2.append((f"{kind}B{half}", x, y, [2, 3, 10, 11, 6, 7, 14, 15]))
    s3 = []
    for kind in ("lo", "hi"):  # the two halves of the rows together: one column each
        for ab in ("A", "B"):
            x, y = f"{kind}{ab}0", f"{kind}{ab}1"
            s3.append((f"{kind}{ab}x", x, y, [0, 1, 2, 3, 8, 9, 10, 11]))
            s3.append((f"{kind}{ab}y", x, y, [4, 5, 6, 7, 12, 13, 14, 15]))
    _STAGES[:] = [s1, s2, s3]
    # which vector ends up holding which column (checked by following (row, column) labels through)
    vals: dict[str, list[tuple[int, int]]] = {f"a{r}": [(r, c) for c in range(8)] for r in range(8)}
    for stage in _STAGES:
        for dst, a, b, mask in stage:
            both = vals[a] + vals[b]
            vals[dst] = [both[i] for i in mask]
    column = {}
    for name in (dst for dst, *_ in _STAGES[-1]):
        v = vals[name]
        assert [e[0] for e in v] == list(range(8)) and len({e[1] for e in v}) == 1, (name, v)
        column[v[0][1]] = name
    assert sorted(column) == list(range(8))
    return column


_COLUMN = _network()


@intrinsic
def _transpose_add8(
    typingctx: Any, out: Any, col: Any, static: Any, base: Any, src: Any, row: Any, n_rows: Any, lane: Any
) -> tuple[Any, Any]:
    """``out[static[base + lane + k], col + q] += src[row + min(q, n_rows − 1), lane + k]`` for q, k in
    0…7: eight rows of eight pixel lanes of ``src`` (C-contiguous 2-D, integers of at most 64 bits,
    zero-extended) added to those pixels' rows of ``out`` (C-contiguous 2-D, 64-bit integers). Pixels
    are added one after the other (two of them with the same row add up). Rows past ``n_rows`` repeat
    the last one: ``out``'s columns for them take sums that mean nothing (a block of fewer than eight
    rows). No bounds are checked."""
    sig = types.void(out, col, static, base, src, row, n_rows, lane)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        out_t, _, static_t, _, src_t = signature.args[:5]
        out_a = context.make_array(out_t)(context, builder, args[0])
        static_a = context.make_array(static_t)(context, builder, args[2])
        src_a = context.make_array(src_t)(context, builder, args[4])
        col_v, base_v, row_v, n_rows_v, lane_v = args[1], args[3], args[5], args[6], args[7]
        i64 = ir.IntType(64)
        out_el = out_a.data.type.pointee
        src_el = src_a.data.type.pointee
        vty = ir.VectorType(out_el, 8)
        src_vty = ir.VectorType(src_el, 8)
        out_cols = cgutils.unpack_tuple(builder, out_a.shape, 2)[1]
        src_cols = cgutils.unpack_tuple(builder, src_a.shape, 2)[1]
        last = builder.sub(n_rows_v, ir.Constant(i64, 1))
        vals = {}
        for q in range(8):
            qv = ir.Constant(i64, q)
            r = builder.add(row_v, builder.select(builder.icmp_signed("<", qv, last), qv, last))
            ptr = builder.gep(src_a.data, [builder.add(builder.mul(r, src_cols), lane_v)])
            v = builder.load(builder.bitcast(ptr, src_vty.as_pointer()), align=src_el.width // 8)
            vals[f"a{q}"] = builder.zext(v, vty) if src_el.width < out_el.width else v
        mask_t = ir.VectorType(ir.IntType(32), 8)
        for stage in _STAGES:
            for dst, a, b, mask in stage:
                vals[dst] = builder.shuffle_vector(vals[a], vals[b], ir.Constant(mask_t, mask))
        for k in range(8):
            p = builder.add(base_v, builder.add(lane_v, ir.Constant(i64, k)))
            s = builder.load(builder.gep(static_a.data, [p]))
            ptr = builder.gep(out_a.data, [builder.add(builder.mul(s, out_cols), col_v)])
            vp = builder.bitcast(ptr, vty.as_pointer())
            builder.store(builder.add(builder.load(vp, align=8), vals[_COLUMN[k]]), vp, align=8)
        return context.get_dummy_value()

    return sig, codegen


transpose_add8 = cast("Callable[..., None]", _transpose_add8)
