#!/usr/bin/python3
"""Independent dequantizer for GPTQ-format checkpoints ("gptq" v1, as AutoGPTQ / GPTQModel / transformers
load them), written from the format's description, not from spintrain's C++.

usage: gptq_dequant.py GPTQ_DIR FAKE_DIR [--tol T]

GPTQ_DIR is a spin-gptq --format gptq output, FAKE_DIR the --format fake output of the same run (same
options). For every quantized linear "<p>" this reads <p>.qweight / .qzeros / .scales / .g_idx and
config.json's quantization_config, checks the shapes both clients allocate (AutoGPTQ: in // 32 * bits
rows of qweight and out // 32 * bits columns of qzeros; GPTQModel: ceil(in * bits / 32)), unpacks the
codes twice (as one little-endian bit stream per column / row, and word by word with the bit positions
of the format's description, which is how the clients' shift tables read 3 bits) and dequantizes

    W[o, i] = scales[g, o] * (code[i, o] - (qzero[g, o] + 1)),   g = g_idx[i]     (v1: zero - 1 is stored)

in float64. W must equal FAKE_DIR's "<p>.weight" to within T (default 0: a float16 scale times an integer
of at most 255 in magnitude is exact in float32, so both sides hold the same numbers). Every other tensor
must be FAKE_DIR's tensor rounded to float16. Also checked: g_idx is i // group_size without desc_act,
every zero point is 2^(bits-1) with sym, and both configs agree on the options and intermediate_size.

Prints one line: "ok: ..." with the max |diff| (exit 0), or "mismatch: ..." naming the tensor (exit 1).
"""
import json
import math
import os
import sys

import numpy as np

from safetensors_np import read_safetensors

PACKED = (".qweight", ".qzeros", ".scales", ".g_idx")


class Mismatch(Exception):
    pass


def check(cond, *msg):
    if not cond:
        raise Mismatch(" ".join(str(m) for m in msg))


def read_dir(d):
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        tensors = {}
        for shard in sorted(set(json.load(open(index))["weight_map"].values())):
            tensors.update(read_safetensors(os.path.join(d, shard)))
        return tensors
    return read_safetensors(os.path.join(d, "model.safetensors"))


def unpack_stream(words, bits):
    """words [rows, nw] (int32) -> codes [rows, nw * 32 // bits]: the words of a row, lowest bit first,
    are one bit stream in which code k occupies bits [bits*k, bits*k + bits)."""
    rows = words.shape[0]
    raw = np.ascontiguousarray(words.astype("<i4")).view(np.uint8).reshape(rows, -1)  # 4 bytes a word, LSB first
    stream = np.unpackbits(raw, axis=1, bitorder="little")  # [rows, nw * 32]
    fields = stream.reshape(rows, -1, bits).astype(np.int64)
    return (fields << np.arange(bits, dtype=np.int64)).sum(-1)


def unpack_words(words, bits):
    """The same, word by word as the format's description places the fields: 2/4/8 bits hold 32 / bits
    whole codes a word, code k at bit bits*k; 3 bits fill 3 words with 32 codes, two of them straddling:
    word 0: codes 0..9 at 3k, code 10's two low bits at 30; word 1: code 10's high bit at 0, codes
    11..20 at 3(k-11)+1, code 21's low bit at 31; word 2: code 21's two high bits at 0, codes 22..31 at
    3(k-22)+2."""
    w = words.astype(np.int64) & 0xFFFFFFFF  # [rows, nw], unsigned
    rows, nw = w.shape
    if bits in (2, 4, 8):
        per, mask = 32 // bits, (1 << bits) - 1
        codes = np.stack([(w >> (bits * k)) & mask for k in range(per)], axis=2)  # [rows, nw, per]
        return codes.reshape(rows, nw * per)
    assert bits == 3
    check(nw % 3 == 0, "3-bit words come in threes, got", nw)
    w0, w1, w2 = w[:, 0::3], w[:, 1::3], w[:, 2::3]
    codes = [(w0 >> (3 * k)) & 7 for k in range(10)]
    codes.append(((w0 >> 30) & 3) | ((w1 & 1) << 2))
    codes += [(w1 >> (3 * (k - 11) + 1)) & 7 for k in range(11, 21)]
    codes.append(((w1 >> 31) & 1) | ((w2 & 3) << 1))
    codes += [(w2 >> (3 * (k - 22) + 2)) & 7 for k in range(22, 32)]
    return np.stack(codes, axis=2).reshape(rows, nw // 3 * 32)


def unpack(words, bits, name):
    a, b = unpack_stream(words, bits), unpack_words(words, bits)
    check(np.array_equal(a, b), name, ": the two unpackings disagree (reference bug)")
    return a


def main(argv):
    tol = 0.0
    if "--tol" in argv:
        i = argv.index("--tol")
        tol = float(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    gdir, fdir = argv[1], argv[2]
    gcfg = json.load(open(os.path.join(gdir, "config.json")))
    fcfg = json.load(open(os.path.join(fdir, "config.json")))
    qc = gcfg.get("quantization_config", {})
    check(qc.get("quant_method") == "gptq", gdir, ": quantization_config.quant_method is not gptq")
    check(qc.get("checkpoint_format", "gptq") == "gptq", gdir, ": checkpoint_format is not gptq (v1)")
    bits, group_size, desc_act, sym = qc["bits"], qc["group_size"], qc["desc_act"], qc["sym"]
    check(bits in (2, 3, 4, 8), gdir, ": bits", bits, "is not 2, 3, 4 or 8")
    fq = fcfg.get("gptq_fake_quant", {})
    for key in ("bits", "group_size", "desc_act", "sym"):
        check(fq.get(key) == qc[key], fdir, ": gptq_fake_quant.%s" % key, fq.get(key), "differs from", qc[key])
    check(gcfg["intermediate_size"] == fcfg["intermediate_size"], "intermediate_size differs:",
          gcfg["intermediate_size"], fcfg["intermediate_size"])
    check("weight_clip_file" not in gcfg.get("rotation", {}), gdir, ": rotation still names a weight_clip_file")

    g, f = read_dir(gdir), read_dir(fdir)
    prefixes = sorted(n[: -len(".qweight")] for n in g if n.endswith(".qweight"))
    check(prefixes, gdir, ": no quantized linears")
    max_diff, seen = 0.0, set()
    for p in prefixes:
        name = p + ".weight"
        check(name in f, fdir, ": has no", name)
        out, inn = f[name].shape
        groups = 1 if group_size == -1 else math.ceil(inn / group_size)
        qweight, qzeros, scales, g_idx = (g.get(p + s) for s in PACKED)
        check(all(t is not None for t in (qweight, qzeros, scales, g_idx)), p, ": a packed tensor is missing")
        check(qweight.dtype == np.int32 and qzeros.dtype == np.int32 and g_idx.dtype == np.int32, p,
              ": qweight/qzeros/g_idx must be int32")
        check(scales.dtype == np.float16, p, ": scales must be float16, got", scales.dtype)
        # The shapes as both clients allocate them (they agree only when in and out are multiples of 32).
        autogptq = ((inn // 32 * bits, out), (groups, out // 32 * bits))
        gptqmodel = ((math.ceil(inn * bits / 32), out), (groups, math.ceil(out * bits / 32)))
        for client, (qw_shape, qz_shape) in (("AutoGPTQ", autogptq), ("GPTQModel", gptqmodel)):
            check(qweight.shape == qw_shape, p, ".qweight has shape", qweight.shape, "but", client, "allocates", qw_shape)
            check(qzeros.shape == qz_shape, p, ".qzeros has shape", qzeros.shape, "but", client, "allocates", qz_shape)
        check(scales.shape == (groups, out), p, ".scales has shape", scales.shape)
        check(g_idx.shape == (inn,), p, ".g_idx has shape", g_idx.shape)
        check(g_idx.min() >= 0 and g_idx.max() < groups, p, ".g_idx outside [0, %d)" % groups)
        if not desc_act:
            expect = np.zeros(inn, np.int64) if group_size == -1 else np.arange(inn) // group_size
            check(np.array_equal(g_idx, expect), p, ".g_idx is not i // group_size without desc_act")

        codes = unpack(qweight.T, bits, p + ".qweight").T  # [in, out]
        zeros = unpack(qzeros, bits, p + ".qzeros") + 1    # [groups, out]
        if sym:
            check(np.all(zeros == 2 ** (bits - 1)), p, ": sym but a zero point is not", 2 ** (bits - 1))
        gi = g_idx.astype(np.int64)
        w = (scales.astype(np.float64)[gi] * (codes - zeros[gi])).T  # [out, in]
        diff = float(np.abs(w - f[name].astype(np.float64)).max())
        check(diff <= tol, p, ": dequantized weight differs from the fake export by", diff, "(tolerance %g)" % tol)
        max_diff = max(max_diff, diff)
        seen.add(name)

    floats = 0
    for name, t in g.items():
        if name.endswith(PACKED):
            continue
        check(t.dtype == np.float16, gdir, ":", name, "is", t.dtype, "not float16")
        check(name in f, fdir, ": has no", name)
        check(np.array_equal(t, f[name].astype(np.float16)), name, ": differs from the fake export in float16")
        floats += 1
        seen.add(name)
    missing = sorted(set(f) - seen)
    check(not missing, gdir, ": lacks", missing[:3])
    print("ok: %d quantized linears (%d-bit, group_size %d, %s, desc_act %s), max_abs_diff=%g; %d float16 tensors equal"
          % (len(prefixes), bits, group_size, "sym" if sym else "asym", desc_act, max_diff, floats))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Mismatch as e:
        print("mismatch: " + str(e))
        sys.exit(1)
