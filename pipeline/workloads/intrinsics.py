"""Hand-written LLVM IR for numba kernels: the few machine operations numba does not
emit from Python source (a prefetch hint, one popcount instruction, an unaligned load,
a vector compare, a float's bits).

Apart because the wavelet tree (`wavelet/access.py`, `wavelet/index.py`,
`wavelet/btree.py`) and the learned index (`learned_index/lookups.py`,
`learned_index/rmi_models.py`) use the same ones: written once, here, they compile to
the same instructions in both. Written by hand: numba offers no public prefetch or
popcount, and `numba.extending.intrinsic` is its documented way to emit LLVM IR.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: uint64 words (keys, packed digits) per 64-byte cache line
LINE = 8


def _prefetch_intrinsic(locality: int, doc: str):
    @intrinsic
    def prefetch(typingctx, array, index):
        def codegen(context, builder, signature, args):
            array_type = signature.args[0]
            array_struct = context.make_array(array_type)(context, builder, args[0])
            pointer = cgutils.get_item_pointer(context, builder, array_type, array_struct, [args[1]],
                                               wraparound=False)
            byte_pointer = ir.IntType(8).as_pointer()
            int32 = ir.IntType(32)
            function = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, int32, int32, int32]),
                "llvm.prefetch.p0")
            builder.call(function, [builder.bitcast(pointer, byte_pointer), ir.Constant(int32, 0),
                                    ir.Constant(int32, locality), ir.Constant(int32, 1)])  # read, locality, data
            return context.get_dummy_value()

        return types.void(array, types.int64), codegen

    prefetch.__doc__ = doc
    return prefetch


prefetch = _prefetch_intrinsic(3, """`prefetch(array, i)`: a hint to bring array[i]'s cache line into cache (LLVM's
    llvm.prefetch: read, high locality: prefetcht0, into L1). It never faults and never
    waits, so a lookup can start the memory reads of many queries (or the next level of
    many accesses) before it needs any of them.""")
prefetch_l2 = _prefetch_intrinsic(2, """`prefetch_l2(array, i)`: `prefetch` with a lower locality (prefetcht1: into L2, not
    L1). The pipelined lookups keep ~20 lines in flight, about what L1's miss buffers hold;
    filling L2 instead leaves them to the loads, and the count of an L2-resident line is a
    ~14-cycle load the core overlaps (fused loop, 10M lognormal keys, the two alternated 9
    times: 12.7 against 14.0 ns, log_radix/cubic 1024 leaves; 14.2 against 15.5, 2^16
    log_radix/linear leaves).""")


@intrinsic
def popcount64(typingctx, x):
    """Population count of a uint64 as one `popcnt` instruction (llvm.ctpop)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@intrinsic
def load_unaligned_u64(typingctx, array, byte_offset):
    """The 8 bytes of `array`'s buffer from `byte_offset` on, as one little-endian uint64
    (an unaligned load: x86 takes it in one instruction, two lines at worst)."""
    sig = types.uint64(array, types.int64)

    def codegen(context, builder, signature, args):
        array_struct = context.make_array(signature.args[0])(context, builder, args[0])
        base = builder.bitcast(array_struct.data, ir.IntType(8).as_pointer())
        pointer = builder.bitcast(builder.gep(base, [args[1]]), ir.IntType(64).as_pointer())
        return builder.load(pointer, align=1)

    return sig, codegen


@intrinsic
def count_below(typingctx, array, start, q):
    """`count_below(keys, i, q)`: how many of keys[i:i + 8] (uint64) are < q, as one vector
    load, one unsigned compare and a population count (AVX-512: vpcmpuq, kmov, popcnt;
    LLVM lowers the same IR to narrower vectors elsewhere). Written as IR because numba
    leaves the equivalent loop of eight scalar compares unvectorised (measured: ~3x
    slower per lookup on L2-resident keys). No bounds check: the caller keeps i + 8 <= n.
    Typed for C-contiguous 1-D uint64 arrays only (the tables' type, `models.KEY`)."""
    if not (isinstance(array, types.Array) and array.ndim == 1 and array.layout == "C"
            and array.dtype == types.uint64):
        return None  # numba reports the call as untyped

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        int64 = ir.IntType(64)
        vector = ir.VectorType(int64, LINE)
        values = builder.load(builder.bitcast(builder.gep(data, [args[1]]), vector.as_pointer()), align=8)
        query = builder.insert_element(ir.Constant(vector, ir.Undefined), args[2], ir.Constant(ir.IntType(32), 0))
        query = builder.shuffle_vector(query, ir.Constant(vector, ir.Undefined),
                                       ir.Constant(ir.VectorType(ir.IntType(32), LINE), [0] * LINE))
        bits = builder.bitcast(builder.icmp_unsigned("<", values, query), ir.IntType(LINE))
        popcount = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(LINE), [ir.IntType(LINE)]), f"llvm.ctpop.i{LINE}")
        return builder.zext(builder.call(popcount, [bits]), int64)

    return types.int64(array, types.int64, types.uint64), codegen


@intrinsic
def float_bits(typingctx, x):
    """The IEEE-754 bits of a float64 as an int64 (no conversion)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def bits_float(typingctx, bits):
    """The float64 whose IEEE-754 bits are this int64."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen
