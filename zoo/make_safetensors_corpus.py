#!/usr/bin/env python3
"""Writes the safetensors test corpus (tests/data/safetensors/): malformed files, one per reject case of the
reader (bad_*.safetensors, bad_sharded_*/), and valid edge cases (good_*.safetensors, good_sharded/).

Standard library only (struct, json). Deterministic: the committed files are this script's output.
Usage: python3 zoo/make_safetensors_corpus.py [OUT_DIR]   (default: tests/data/safetensors next to zoo/)
"""
import json
import os
import shutil
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "data", "safetensors")


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


def f16(*v):
    return struct.pack("<%de" % len(v), *v)


def bf16(*v):  # exact for the values used here (they fit in 8 mantissa bits)
    return b"".join(struct.pack("<I", struct.unpack("<I", struct.pack("<f", x))[0])[2:] for x in v)


def i32(*v):
    return struct.pack("<%di" % len(v), *v)


def i64(*v):
    return struct.pack("<%dq" % len(v), *v)


def header_text(header, align=8):
    """A header dict (or raw text) as bytes, padded with spaces to a multiple of `align` like the reference."""
    text = header if isinstance(header, (str, bytes)) else json.dumps(header, separators=(",", ":"))
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return raw + b" " * ((-len(raw)) % align)


def write(path, header, data=b"", n=None, align=8):
    """Writes 8-byte LE length (n overrides it), the header and the data."""
    raw = header_text(header, align)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw) if n is None else n))
        f.write(raw)
        f.write(data)


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def good(out):
    # Every dtype, laid out by decreasing element size as the reference writer does.
    write(os.path.join(out, "good_all_dtypes.safetensors"), {
        "i64": entry("I64", [2], 0, 16),
        "f32": entry("F32", [2, 3], 16, 40),
        "i32": entry("I32", [4], 40, 56),
        "bf16": entry("BF16", [2, 2], 56, 64),
        "f16": entry("F16", [3], 64, 70),
    }, i64(-5, 1 << 40) + f32(1.5, -2.0, 3.25, 0.0, -0.125, 100.0) + i32(7, -8, 9, 2147483647)
       + bf16(1.0, -2.5, 0.15625, 384.0) + f16(0.5, -1.0, 65504.0))
    write(os.path.join(out, "good_metadata.safetensors"), {
        "__metadata__": {"format": "pt", "note": "vlmamba corpus"},
        "w": entry("F32", [2], 0, 8),
    }, f32(1.0, 2.0))
    write(os.path.join(out, "good_rank0.safetensors"), {
        "scalar": entry("F32", [], 0, 4),
        "count": entry("I64", [], 4, 12),
    }, f32(3.5) + i64(42))
    write(os.path.join(out, "good_zero_sized.safetensors"), {
        "empty": entry("F32", [0, 4], 0, 0),
        "after": entry("F32", [2], 0, 8),
        "tail_empty": entry("BF16", [3, 0], 8, 8),
    }, f32(-1.0, 1.0))
    write(os.path.join(out, "good_empty_header.safetensors"), "{}")
    # Header of 8k + 5 bytes: the data starts at an odd byte, so the reader must copy to align.
    unaligned = '{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}'
    unaligned += " " * ((5 - len(unaligned)) % 8)
    write(os.path.join(out, "good_unaligned.safetensors"), unaligned, f32(0.25, -0.5, 8.0), align=1)
    # Header order differs from data order; metadata last.
    write(os.path.join(out, "good_unsorted.safetensors"),
          '{"z":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
          '"a":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},"__metadata__":{"k":"v"}}',
          f32(1.0, 2.0) + f16(3.0, 4.0))
    # An unknown extra field in an entry is ignored, as by the reference.
    write(os.path.join(out, "good_extra_field.safetensors"),
          {"a": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4], "comment": "ignored"}}, i32(5))

    # A sharded checkpoint, as transformers writes it.
    d = os.path.join(out, "good_sharded")
    os.makedirs(d)
    write(os.path.join(d, "model-00001-of-00002.safetensors"), {
        "layer.0.weight": entry("F32", [2, 2], 0, 16),
        "layer.0.bias": entry("F32", [2], 16, 24),
    }, f32(1.0, 2.0, 3.0, 4.0) + f32(0.5, -0.5))
    write(os.path.join(d, "model-00002-of-00002.safetensors"), {
        "head.weight": entry("F32", [1, 2], 0, 8),
        "layer.1.weight": entry("BF16", [2, 2], 8, 16),
    }, f32(-1.0, 1.0) + bf16(1.0, 2.0, 3.0, 4.0))
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 40}, "weight_map": {
            "head.weight": "model-00002-of-00002.safetensors",
            "layer.0.bias": "model-00001-of-00002.safetensors",
            "layer.0.weight": "model-00001-of-00002.safetensors",
            "layer.1.weight": "model-00002-of-00002.safetensors",
        }}, f, indent=2, sort_keys=True)
        f.write("\n")


def bad(out):
    def w(name, header, data=b"", **kw):
        write(os.path.join(out, "bad_%s.safetensors" % name), header, data, **kw)

    def raw(name, content):
        with open(os.path.join(out, "bad_%s.safetensors" % name), "wb") as f:
            f.write(content)

    a8 = entry("F32", [2], 0, 8)
    # Length prefix and file size.
    raw("empty_file", b"")
    raw("too_small", b"\x08\x00\x00\x00\x00")
    w("header_too_long", {"a": a8}, f32(1, 2), n=1000)
    raw("header_over_100mb", struct.pack("<Q", 200_000_000) + b'{"a":{}}' + b"\x00" * 8)
    full = header_text({"a": entry("F32", [4, 4], 0, 64)})
    raw("truncated", struct.pack("<Q", len(full)) + full + f32(*range(5)))
    # JSON.
    w("invalid_json", '{"a":{"dtype":"F32",', f32(1, 2))
    w("json_array", "[1,2]")
    w("json_string", '"weights"')
    w("byte_order_mark", b"\xef\xbb\xbf{}")
    w("invalid_utf8", b'{"a\xff":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', f32(1, 2))
    w("duplicate_name", '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                        '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', f32(1, 2))
    w("duplicate_field", '{"a":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}}', f32(1, 2))
    # Fields.
    w("entry_not_object", {"a": [0, 8]}, f32(1, 2))
    w("unknown_dtype", {"a": entry("F33", [2], 0, 8)}, f32(1, 2))
    w("unsupported_dtype", {"a": entry("F64", [1], 0, 8)}, f32(1, 2))
    w("dtype_not_string", {"a": entry(32, [2], 0, 8)}, f32(1, 2))
    w("missing_dtype", {"a": {"shape": [2], "data_offsets": [0, 8]}}, f32(1, 2))
    w("missing_shape", {"a": {"dtype": "F32", "data_offsets": [0, 8]}}, f32(1, 2))
    w("missing_offsets", {"a": {"dtype": "F32", "shape": [2]}}, f32(1, 2))
    w("shape_string", {"a": entry("F32", "2", 0, 8)}, f32(1, 2))
    w("shape_float", '{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}', f32(1, 2))
    w("negative_dim", {"a": entry("F32", [2, -2], 0, 16)}, f32(1, 2, 3, 4))
    w("dim_too_large", {"a": entry("F32", [2 ** 64, 1], 0, 8)}, f32(1, 2))
    w("overflow_dims", {"a": entry("F32", [2 ** 32, 2 ** 32, 16], 0, 8)}, f32(1, 2))
    w("offsets_length", {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 16]}}, f32(1, 2))
    w("offsets_string", {"a": {"dtype": "F32", "shape": [2], "data_offsets": "0:8"}}, f32(1, 2))
    w("negative_offset", {"a": entry("F32", [2], -8, 0)}, f32(1, 2))
    # Byte ranges.
    w("size_mismatch", {"a.weight": entry("F32", [2, 2], 0, 12)}, f32(1, 2, 3))
    w("offset_outside", {"a": a8, "b": entry("F32", [2], 100, 108)}, f32(1, 2))
    w("reversed_offsets", {"a": entry("F32", [2], 8, 0)}, f32(1, 2))
    w("overlapping", {"a": a8, "b": entry("F32", [2], 4, 12)}, f32(1, 2, 3))
    w("gap", {"a": a8, "b": entry("F32", [2], 12, 20)}, f32(1, 2, 0, 3, 4))
    w("leading_gap", {"a": entry("F32", [2], 4, 12)}, f32(0, 1, 2))
    w("trailing_bytes", {"a": a8}, f32(1, 2, 3))
    # Metadata.
    w("metadata_not_object", {"__metadata__": ["format", "pt"], "a": a8}, f32(1, 2))
    w("metadata_value", {"__metadata__": {"format": "pt", "step": 3}, "a": a8}, f32(1, 2))

    # Sharded checkpoints.
    def shard_dir(name, weight_map, shards, index=None):
        d = os.path.join(out, "bad_sharded_" + name)
        os.makedirs(d)
        for fname, (hdr, data) in shards.items():
            write(os.path.join(d, fname), hdr, data)
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            f.write(index if index is not None else json.dumps({"weight_map": weight_map}, indent=2) + "\n")

    one = {"model-1.safetensors": ({"a": a8}, f32(1, 2))}
    shard_dir("missing_shard", {"a": "model-1.safetensors", "b": "model-2.safetensors"}, one)
    shard_dir("missing_tensor", {"a": "model-1.safetensors", "b": "model-1.safetensors"}, one)
    shard_dir("escape", {"a": "../good_metadata.safetensors"}, one)
    shard_dir("no_weight_map", None, one, index='{"metadata": {"total_size": 8}}\n')
    shard_dir("duplicate_key", None, one,
              index='{"weight_map": {"a": "model-1.safetensors", "a": "model-1.safetensors"}}\n')
    shard_dir("bad_shard", {"a": "model-1.safetensors"},
              {"model-1.safetensors": ({"a": entry("F32", [2], 0, 12)}, f32(1, 2, 3))})


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    good(OUT)
    bad(OUT)
    print("wrote", len(os.listdir(OUT)), "entries to", OUT)


if __name__ == "__main__":
    main()
