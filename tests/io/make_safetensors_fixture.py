#!/usr/bin/env python3
"""Test-data generator and checker for tests/io/safetensors.cpp, independent of the C++ code.

The safetensors format is written and read here with nothing but struct and json, so the interop test
needs only python3. The torch-* commands additionally need `import torch` (Debian's python3-torch).

  plain-write FILE    write tensors of F32/F64/F16/BF16/I64 with known values (header left unpadded)
  plain-check FILE    check a file the C++ writer produced (values, metadata, padding, layout)
  torch-write DIR     write torch_mixed.safetensors (F32/F16/BF16/F64/I64 from torch) and
                      torch_as_f32.safetensors (the same floats converted by torch to float32)
  torch-check FILE    load a C++-written GPT-2-named file into torch tensors and check the values
Exit status 0 when all is well; otherwise a message on stderr and status 1.
"""
import json
import struct
import sys

DTYPE_SIZE = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
              "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def write(path, tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape, raw little-endian bytes)."""
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    if pad:
        text += b" " * (-len(text) % 8)
    elif len(text) % 8 == 0:
        text += b" "  # keep the data misaligned on purpose
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(raw for _, _, _, raw in tensors))


def fail(msg):
    sys.stderr.write("make_safetensors_fixture: " + msg + "\n")
    sys.exit(1)


def read(path):
    """Returns (header length, metadata, {name: (dtype, shape, raw bytes)}), checking the layout."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    metadata = header.pop("__metadata__", {}) or {}
    tensors, spans = {}, []
    for name, e in header.items():
        begin, end = e["data_offsets"]
        count = 1
        for d in e["shape"]:
            count *= d
        if end - begin != count * DTYPE_SIZE[e["dtype"]]:
            fail(f"{name}: offsets {begin, end} disagree with shape {e['shape']}")
        spans.append((begin, end))
        tensors[name] = (e["dtype"], e["shape"], data[begin:end])
    covered = 0
    for begin, end in sorted(spans):
        if begin != covered:
            fail(f"data buffer is not tiled: a tensor starts at {begin}, expected {covered}")
        covered = end
    if covered != len(data):
        fail(f"tensors cover {covered} bytes of a {len(data)}-byte data buffer")
    return n, metadata, tensors


def floats(raw, fmt="f"):
    return list(struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt), fmt), raw))


def plain_write(path):
    bf16 = b"".join(struct.pack("<f", v)[2:] for v in (1.5, -0.375))  # top half of a float32
    write(path, [
        ("a.f32", "F32", [2, 3], struct.pack("<6f", *[i * 0.5 - 1 for i in range(6)])),
        ("b.f64", "F64", [4], struct.pack("<4d", *[(i - 1.5) * 0.1 for i in range(4)])),
        ("c.f16", "F16", [3], struct.pack("<3e", 1.0, -2.5, 65504.0)),
        ("d.bf16", "BF16", [1, 2], bf16),
        ("e.i64", "I64", [2], struct.pack("<2q", 7, -9)),
    ], {"format": "pt", "writer": "plain python"}, pad=False)


def plain_check(path):
    n, metadata, tensors = read(path)
    if (8 + n) % 8:
        fail(f"header length {n}: data does not start at a multiple of 8")
    if metadata != {"n_layer": "2", "name": "tést ✓"}:
        fail(f"metadata {metadata}")
    want = {"w": ("F32", [3, 4], [struct.unpack("<f", struct.pack("<f", i * 0.25 - 1))[0] for i in range(12)]),
            "s": ("F32", [], [3.5]), "e": ("F32", [0, 5], [])}
    if set(tensors) != set(want):
        fail(f"tensor names {sorted(tensors)}")
    for name, (dtype, shape, values) in want.items():
        got = tensors[name]
        if got[0] != dtype or got[1] != shape or floats(got[2]) != values:
            fail(f"{name}: got {got[0]} {got[1]} {floats(got[2])}, want {dtype} {shape} {values}")
    print("plain-check: ok")


def torch_bytes(t):
    import torch
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)  # numpy has no bfloat16
    return t.numpy().tobytes()


def torch_write(directory):
    import torch
    torch.manual_seed(0)
    special = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 6e-8, 1e-40, 65504.0, 7e4])
    floats32 = {
        "wte.weight": torch.randn(16, 8),
        "h.0.ln_1.bias": torch.randn(8) * 1e-3,
        "h.0.attn.c_attn.weight": torch.randn(8, 24) * 300,
        "special": special,
        "wide": torch.randn(5, 3) * 1e30,
    }
    codes = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}
    mixed, as_f32 = [], []
    for i, (name, t) in enumerate(floats32.items()):
        for dtype in codes:
            if dtype == torch.float64:
                cast = t.double() * (1 + 1e-9)  # values float32 cannot hold exactly
            else:
                cast = t.to(dtype)
            key = f"{name}.{codes[dtype]}"
            mixed.append((key, codes[dtype], list(cast.shape), torch_bytes(cast)))
            as_f32.append((key, "F32", list(cast.shape), torch_bytes(cast.float())))
    mixed.append(("ids", "I64", [4], torch_bytes(torch.arange(4, dtype=torch.int64))))
    write(f"{directory}/torch_mixed.safetensors", mixed, {"format": "pt"})
    write(f"{directory}/torch_as_f32.safetensors", as_f32)


def torch_check(path):
    import torch
    _, metadata, tensors = read(path)
    want = {"wte.weight": torch.arange(16 * 8, dtype=torch.float32).reshape(16, 8) * 0.01 - 0.5,
            "wpe.weight": torch.arange(4 * 8, dtype=torch.float32).reshape(4, 8) * -0.02 + 0.3}
    if metadata != {"n_embd": "8"}:
        fail(f"metadata {metadata}")
    for name, w in want.items():
        dtype, shape, raw = tensors[name]
        got = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape)
        # The C++ side computes i * scale + shift in float32, perhaps fused (one rounding): allow an ulp or so.
        if dtype != "F32" or list(got.shape) != list(w.shape) or not torch.allclose(got, w, rtol=1e-6, atol=1e-7):
            fail(f"{name}: got {dtype} {list(got.shape)}, max |diff| {(got - w).abs().max().item()}")
    print("torch-check: ok")


if __name__ == "__main__":
    commands = {"plain-write": plain_write, "plain-check": plain_check,
                "torch-write": torch_write, "torch-check": torch_check}
    if len(sys.argv) != 3 or sys.argv[1] not in commands:
        fail("usage: make_safetensors_fixture.py {" + "|".join(commands) + "} PATH")
    commands[sys.argv[1]](sys.argv[2])
