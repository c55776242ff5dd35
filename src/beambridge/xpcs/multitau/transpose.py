"""An LLVM transpose for the pass from the dense state to the bin sums (:mod:`.bins`).

numba vectorises loops, not blocks of statements (its SLP vectoriser is off), so an 8×8 transpose of
pixel lanes into per-pixel rows, which the bin sums need, stays scalar when written as numba loops.
:func:`transpose_add8` writes it as LLVM vector operations (eight vector loads, 24 two-input
shuffles, eight vector additions); LLVM lowers them to whatever the CPU has (one zmm register per
row with AVX-512, two ymm with AVX2, four xmm with SSE2). Prefetches are
:func:`beambridge.xpcs.multitau.simd.prefetch_l2`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

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
