"""Sixteen float32 lanes as one numba value: LLVM's ``<16 x float>`` through ``numba.extending``.

numba vectorises only a function's innermost loop, over array elements, so a value that a loop carries
from one iteration to the next (a multi-tau level's last eight elements, its product sums) lives in
memory and is loaded and stored every time. A :data:`f32x16` local is one SSA value instead: LLVM keeps
it in a register (one zmm with AVX-512, two ymm with AVX2, four xmm with SSE — the same code runs on
any x86-64 or ARM CPU, LLVM splits the vector to the hardware's width), and the arithmetic below is one
instruction per sixteen lanes.

Used by :mod:`beambridge.xpcs.multitau.dense` for integer counts: every value is an integer below
2**24, so float32 holds it exactly, and a fused multiply-add of such integers whose result stays below
2**24 is exact too (the caller bounds its sums and adds them into its uint64 sums before they could
reach 2**24). Float32 rather than uint32: a 16-lane float multiply-add is one instruction (two per
cycle on AVX-512 cores), a uint32 multiply is two and the add a third.

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


@intrinsic
def _vstore(typingctx: Any, arr: Any, off: Any, v: Any) -> Any:
    """``arr.flat[off : off + 16] = v`` (converted to the array's type: exact for integers below 2**24)."""
    if not _supported(arr) or not isinstance(off, types.Integer) or v != f32x16:
        return None
    dtype = arr.dtype

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        et = _elem_type(dtype)
        val = args[2]
        if isinstance(dtype, types.Float):
            val = val if dtype.bitwidth == 32 else builder.fpext(val, ir.VectorType(et, LANES))
        else:
            val = builder.fptoui(val, ir.VectorType(et, LANES))
        builder.store(
            val, _lane_ptr(context, builder, sig.args[0], args[0], args[1], et), align=dtype.bitwidth // 8
        )
        return context.get_dummy_value()

    return types.void(arr, off, v), codegen


@intrinsic
def _vadd_into(typingctx: Any, arr: Any, off: Any, v: Any) -> Any:
    """``arr.flat[off : off + 16] += v`` in the array's own type (uint64 sums: an exact integer add)."""
    if not _supported(arr) or not isinstance(off, types.Integer) or v != f32x16:
        return None
    dtype = arr.dtype

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        et = _elem_type(dtype)
        vt = ir.VectorType(et, LANES)
        ptr = _lane_ptr(context, builder, sig.args[0], args[0], args[1], et)
        old = builder.load(ptr, align=dtype.bitwidth // 8)
        if isinstance(dtype, types.Float):
            val = args[2] if dtype.bitwidth == 32 else builder.fpext(args[2], vt)
            new = builder.fadd(old, val)
        else:
            new = builder.add(old, builder.fptoui(args[2], vt))
        builder.store(new, ptr, align=dtype.bitwidth // 8)
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
