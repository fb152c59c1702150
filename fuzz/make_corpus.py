#!/usr/bin/env python3
"""Writes the seed corpus of the libFuzzer targets in fuzz/ (kept in git, < 2 MB in all).

Usage: /usr/bin/python3 fuzz/make_corpus.py [OUTDIR]   (default: fuzz/corpus next to this file)

Needs torch (Debian's python3-torch) for the .pth seeds and PIL (python3-pil, which torchvision
pulls in) for the images; everything else is written by hand. Output is deterministic: seeded
generators, fixed zip timestamps, gzip without a time stamp. One folder per target:

  pth/          torch.save files: every dtype, views, shared storages, nested checkpoints,
                Parameters, pickle protocol 4, deflate / zip64 / big-endian re-zips
  zip/          the pth seeds plus plain archives: stored, deflate, zip64, comment, empty
  pickle/       data.pkl of every pth seed, pickle.dumps of plain values (protocols 2-5), and a
                few that name forbidden globals
  safetensors/  every dtype, scalar and empty tensors, __metadata__, an empty header
  checkpoint/   the project's checkpoints (safetensors + format tag + JSON metadata), as
                models/checkpoint.cpp writes them
  idx/          every IDX element type, 1 to 4 dims, plain and gzip
  onnx/         small ONNX models written with onnx.helper (opsets 9 and 13): conv/batch-norm/pool/
                gemm, the Shape/Gather/Unsqueeze/Concat/Reshape flatten, slice/pad/clip/softmax,
                ConstantOfShape, typed-field and int32 initializers
  image/        PNG (gray, gray+alpha, RGB, RGBA, palette, 16-bit), JPEG (baseline, progressive,
                gray, 4:2:0 / 4:4:4), BMP (1/8/24/32-bit)
"""
import collections
import gzip
import io
import json
import os
import pickle
import shutil
import struct
import sys
import zipfile

import torch

DTYPES = {
    torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}
ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


# ------------------------------------------------------------------------------------------ pth

def pth_seeds():
    g = torch.Generator().manual_seed(7)
    seeds = collections.OrderedDict()
    seeds["linear"] = collections.OrderedDict(
        [("weight", torch.randn(2, 3, generator=g)), ("bias", torch.zeros(2))])
    every = collections.OrderedDict()
    every["f32"] = torch.randn(2, 2, generator=g)
    every["f64"] = torch.randn(3, dtype=torch.float64, generator=g)
    every["f16"] = torch.tensor([1.0, -2.5, 6e-8, 65504.0], dtype=torch.float16)
    every["bf16"] = torch.randn(2, generator=g).bfloat16()
    every["i64"] = torch.tensor([-3, 2**40 + 1], dtype=torch.int64)
    every["i32"] = torch.tensor([7, -8], dtype=torch.int32)
    every["i16"] = torch.tensor([-300], dtype=torch.int16)
    every["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    every["u8"] = torch.tensor([0, 255], dtype=torch.uint8)
    every["bool"] = torch.tensor([True, False])
    every["scalar"] = torch.tensor(42)
    every["empty"] = torch.zeros(0, 3)
    seeds["every_dtype"] = every
    base = torch.arange(24, dtype=torch.float32)
    views = collections.OrderedDict()
    views["t"] = base[:6].view(2, 3).t()
    views["slice"] = base[5:17:3]
    views["shared"] = base[2:14].view(3, 4)
    views["expanded"] = torch.ones(1, 3).expand(4, 3)  # stride 0
    seeds["views"] = views
    seeds["nested"] = {"epoch": 3, "state_dict": seeds["linear"], "best": 0.5, "name": "run"}
    seeds["model_key"] = {"model": seeds["linear"], "optimizer": {"lr": 0.1, "steps": [1, 2]}}
    seeds["parameter"] = collections.OrderedDict(
        [("p", torch.nn.Parameter(torch.ones(2, 2))), ("q", torch.nn.Parameter(torch.zeros(1)))])
    torch.manual_seed(0)
    seeds["conv_bn"] = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 2), torch.nn.BatchNorm2d(2)).state_dict()
    seeds["empty_dict"] = collections.OrderedDict()
    return seeds


def rezip(data, compression=zipfile.ZIP_STORED, replace=None, zip64=False):
    out = io.BytesIO()
    saved = (zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT)
    if zip64:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = 16, 2  # zip64 records everywhere
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w", compression) as zout:
            for info in zin.infolist():
                body = zin.read(info.filename)
                if replace and info.filename.endswith(replace[0]):
                    body = replace[1](body)
                zout.writestr(zipfile.ZipInfo(info.filename, ZIP_TIME), body, compress_type=compression)
    finally:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = saved
    return out.getvalue()


def write_pth(out):
    pths = {}
    for name, obj in pth_seeds().items():
        buf = io.BytesIO()
        torch.save(obj, buf)
        pths[name] = buf.getvalue()
    buf = io.BytesIO()
    torch.save(pth_seeds()["every_dtype"], buf, pickle_protocol=4)
    pths["protocol4"] = buf.getvalue()
    pths["linear_deflate"] = rezip(pths["linear"], zipfile.ZIP_DEFLATED)
    pths["linear_zip64"] = rezip(pths["linear"], zip64=True)

    # byteorder "big": the reader byte-swaps the (little-endian) storages into other values
    pths["every_dtype_big_endian"] = rezip(pths["every_dtype"], replace=("/byteorder", lambda b: b"big"))
    for name, data in pths.items():
        write(os.path.join(out, "pth", name + ".pth"), data)
    return pths


# ------------------------------------------------------------------------------------------ zip

def write_zip(out, pths):
    for name in ("linear", "linear_deflate", "linear_zip64", "views"):
        write(os.path.join(out, "zip", name + ".zip"), pths[name])

    def make(entries, compression=zipfile.ZIP_STORED, comment=b"", zip64=False):
        buf = io.BytesIO()
        saved = (zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT)
        if zip64:
            zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = 16, 2
        try:
            with zipfile.ZipFile(buf, "w", compression) as z:
                for n, d in entries:
                    z.writestr(zipfile.ZipInfo(n, ZIP_TIME), d, compress_type=compression)
                z.comment = comment
        finally:
            zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = saved
        return buf.getvalue()

    text = b"the quick brown fox jumps over the lazy dog\n" * 8
    entries = [("a.txt", text), ("dir/b.bin", bytes(range(256))), ("dir/empty", b"")]
    write(os.path.join(out, "zip", "stored.zip"), make(entries))
    write(os.path.join(out, "zip", "deflate.zip"), make(entries, zipfile.ZIP_DEFLATED))
    write(os.path.join(out, "zip", "zip64.zip"), make(entries, zipfile.ZIP_DEFLATED, zip64=True))
    write(os.path.join(out, "zip", "comment.zip"), make(entries[:1], comment=b"a comment"))
    write(os.path.join(out, "zip", "empty.zip"), make([]))
    write(os.path.join(out, "zip", "zeros_deflate.zip"), make([("z", bytes(4096))], zipfile.ZIP_DEFLATED))


# --------------------------------------------------------------------------------------- pickle

def write_pickle(out, pths):
    for name, data in pths.items():
        if name in ("linear_deflate", "linear_zip64", "every_dtype_big_endian"):
            continue
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            pkl = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
            write(os.path.join(out, "pickle", name + ".pkl"), z.read(pkl))
    plain = {
        "dict": {"a": 1, "b": [1, 2, 3], "c": (None, True, False), "d": {"x": 1.5}},
        "ints": [0, 1, -1, 255, 256, 65535, 65536, -2**31, 2**31 - 1, 2**40, -2**63, 2**63 - 1],
        "strings": ["", "ascii", "unicode \u00e9\u4e2d\U0001f600", b"bytes", b"\x00" * 300, "x" * 300],
        "nested": [[[[1]]], ((2,),), {"k": {"k": {"k": []}}}],
        "shared": (lambda l: [l, l, {"again": l}])([1, 2]),
        "ordered": collections.OrderedDict([("w", 1), ("b", 2)]),
        "floats": [0.0, -0.0, 1e308, float("inf"), float("nan"), 1.5],
    }
    for name, obj in plain.items():
        for proto in (2, 4, 5):
            write(os.path.join(out, "pickle", f"{name}_p{proto}.pkl"), pickle.dumps(obj, protocol=proto))
    # forbidden globals (must be refused, never run): GLOBAL + REDUCE, STACK_GLOBAL, INST
    write(os.path.join(out, "pickle", "os_system.pkl"), b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R.")
    write(os.path.join(out, "pickle", "builtins_eval.pkl"),
          b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x031+1\x85R.")
    write(os.path.join(out, "pickle", "inst.pkl"), b"(S'x'\nios\nsystem\n.")


# ---------------------------------------------------------------------------------- safetensors

def safetensors_bytes(tensors, metadata=None, pad=True):
    header, blobs, offset = collections.OrderedDict(), [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        t = t.contiguous()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def write_safetensors(out):
    every = pth_seeds()["every_dtype"]
    d = os.path.join(out, "safetensors")
    write(os.path.join(d, "every_dtype.safetensors"), safetensors_bytes(every, {"format": "pt"}))
    write(os.path.join(d, "linear.safetensors"), safetensors_bytes(pth_seeds()["linear"]))
    write(os.path.join(d, "unpadded.safetensors"),
          safetensors_bytes({"x": torch.arange(3, dtype=torch.int32)}, {"k": "v"}, pad=False))
    write(os.path.join(d, "empty.safetensors"), safetensors_bytes({}))
    write(os.path.join(d, "metadata_only.safetensors"), safetensors_bytes({}, {"a": "b", "c": ""}))


# ----------------------------------------------------------------------------------- checkpoint

def write_checkpoint(out):
    # models/checkpoint.cpp: tensors "model/<name>", "optim/<name>"; metadata {"format":
    # "dl-checkpoint-v1", "dl": <json>} (save_safetensors writes __metadata__ first).
    g = torch.Generator().manual_seed(3)
    model = collections.OrderedDict([("fc.weight", torch.randn(2, 3, generator=g)),
                                     ("fc.bias", torch.randn(2, generator=g)),
                                     ("bn.num_batches_tracked", torch.tensor(5))])
    optim = collections.OrderedDict([("0.momentum_buffer", torch.zeros(2, 3)),
                                     ("1.momentum_buffer", torch.zeros(2))])
    meta = {"epoch": 4, "history": [{"epoch": 1, "loss": 2.3, "acc": 0.1}],
            "optimizer": {"lr": 0.1, "momentum": 0.9, "step": 12},
            "rng": {"s": [1, 2, 3, 18446744073709551615], "has_spare": False, "spare": 0.0},
            "config": {"seed": 1, "model": "scratch"}}
    d = os.path.join(out, "checkpoint")
    tensors = collections.OrderedDict([("model/" + k, v) for k, v in model.items()] +
                                      [("optim/" + k, v) for k, v in optim.items()])
    md = {"dl": json.dumps(meta, separators=(",", ":")), "format": "dl-checkpoint-v1"}
    write(os.path.join(d, "full.ckpt"), safetensors_bytes(tensors, md))
    write(os.path.join(d, "model_only.ckpt"),
          safetensors_bytes(collections.OrderedDict([("model/w", torch.ones(2, dtype=torch.float64))]),
                            {"dl": "{}", "format": "dl-checkpoint-v1"}))
    write(os.path.join(d, "no_tensors.ckpt"),
          safetensors_bytes({}, {"dl": "{\"epoch\":0}", "format": "dl-checkpoint-v1"}))


# ------------------------------------------------------------------------------------------ idx

def idx_bytes(code, fmt, dims, values):
    head = bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    return head + b"".join(struct.pack(">" + fmt, v) for v in values)


def write_idx(out):
    d = os.path.join(out, "idx")
    g = torch.Generator().manual_seed(5)
    images = (torch.rand(3, 28, 28, generator=g) * 255).to(torch.uint8).flatten().tolist()
    seeds = {
        "images_u8": idx_bytes(0x08, "B", [3, 28, 28], images),
        "labels_u8": idx_bytes(0x08, "B", [10], list(range(10))),
        "i8": idx_bytes(0x09, "b", [2, 3], [-128, -1, 0, 1, 2, 127]),
        "i16": idx_bytes(0x0B, "h", [4], [-32768, -1, 1, 32767]),
        "i32": idx_bytes(0x0C, "i", [2, 2], [-2**31, -1, 1, 2**31 - 1]),
        "f32": idx_bytes(0x0D, "f", [1, 2, 1, 2], [1.5, -0.0, float("inf"), 3.25]),
        "f64": idx_bytes(0x0E, "d", [3], [1e300, float("nan"), -2.5]),
        "zero_dim": idx_bytes(0x08, "B", [0, 5], []),
    }
    for name, data in seeds.items():
        write(os.path.join(d, name + ".idx"), data)
        write(os.path.join(d, name + ".idx.gz"), gzip.compress(data, compresslevel=6, mtime=0))


# ---------------------------------------------------------------------------------------- image

def write_image(out):
    from PIL import Image
    d = os.path.join(out, "image")
    g = torch.Generator().manual_seed(11)

    def img(mode, w, h):
        bands = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
        px = (torch.rand(h, w, bands, generator=g) * 255).to(torch.uint8)
        im = Image.frombytes(mode, (w, h), px.numpy().tobytes())
        return im

    def save(im, name, fmt, **kw):
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        write(os.path.join(d, name), buf.getvalue())

    save(img("L", 7, 5), "gray.png", "PNG")
    save(img("LA", 6, 4), "gray_alpha.png", "PNG")
    save(img("RGB", 9, 6), "rgb.png", "PNG")
    save(img("RGBA", 5, 5), "rgba.png", "PNG")
    save(img("RGB", 8, 8).convert("P", palette=Image.ADAPTIVE, colors=16), "palette.png", "PNG")
    save(img("RGBA", 4, 4).convert("P", palette=Image.ADAPTIVE, colors=4), "palette_alpha.png", "PNG",
         transparency=0)
    save(Image.frombytes("I;16", (4, 3), bytes(range(24))), "gray16.png", "PNG")
    save(img("L", 3, 3).convert("1"), "bilevel.png", "PNG")
    save(img("RGB", 16, 16), "baseline.jpg", "JPEG", quality=80)
    save(img("RGB", 17, 9), "progressive.jpg", "JPEG", quality=70, progressive=True)
    save(img("L", 8, 16), "gray.jpg", "JPEG", quality=90)
    save(img("RGB", 16, 16), "444.jpg", "JPEG", quality=90, subsampling=0)
    save(img("RGB", 24, 8), "420_restart.jpg", "JPEG", quality=50, subsampling=2, restart_marker_blocks=1)
    save(img("RGB", 7, 5), "rgb24.bmp", "BMP")
    save(img("RGBA", 4, 3), "rgba32.bmp", "BMP")
    save(img("L", 5, 5), "gray8.bmp", "BMP")
    save(img("L", 9, 2).convert("1"), "mono1.bmp", "BMP")


def write_onnx(out):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)

    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    def out_info(name):
        vi = helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
        vi.type.tensor_type.shape.SetInParent()  # rank unknown; onnx's checker wants the field
        return vi

    def save(name, nodes, inits, inp_shape, opset, out_name="y"):
        graph = helper.make_graph(
            nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, inp_shape)], [out_info(out_name)],
            [numpy_helper.from_array(v, k) for k, v in inits.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="make_corpus")
        model.ir_version = 7 if opset >= 13 else 4
        onnx.checker.check_model(model)
        write(os.path.join(out, "onnx", name + ".onnx"), model.SerializeToString())

    for opset in (9, 13):
        save(f"cnn_op{opset}", [
            helper.make_node("Conv", ["x", "c.weight", "c.bias"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
            helper.make_node("BatchNormalization", ["c", "bn.weight", "bn.bias", "bn.mean", "bn.var"], ["b"]),
            helper.make_node("Relu", ["b"], ["r"]),
            helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("AveragePool", ["p"], ["a"], kernel_shape=[2, 2], count_include_pad=1, pads=[1, 1, 1, 1]),
            helper.make_node("GlobalAveragePool", ["a"], ["g"]),
            helper.make_node("Flatten", ["g"], ["f"]),
            helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["y"], transB=1),
        ], {"c.weight": f32(4, 2, 3, 3), "c.bias": f32(4), "bn.weight": f32(4), "bn.bias": f32(4),
            "bn.mean": f32(4), "bn.var": np.abs(f32(4)) + 0.5, "fc.weight": f32(3, 4), "fc.bias": f32(3)},
            ["N", 2, 6, 6], opset)
        unsq = (helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]) if opset >= 13
                else helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]))
        inits = {"idx": np.array(0, dtype=np.int64), "m1": np.array([-1], dtype=np.int64)}
        if opset >= 13:
            inits["axes"] = np.array([0], dtype=np.int64)
        save(f"flatten_chain_op{opset}", [
            helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "idx"], ["n"]), unsq,
            helper.make_node("Concat", ["n1", "m1"], ["shape"], axis=0),
            helper.make_node("Reshape", ["x", "shape"], ["r"]),
            helper.make_node("Softmax", ["r"], ["y"], axis=1),
        ], inits, ["N", 2, 3], opset)
    save("slice_pad_clip_op13", [
        helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["s"]),
        helper.make_node("Pad", ["s", "pads", "pv"], ["p"]),
        helper.make_node("Clip", ["p", "lo", "hi"], ["c"]),
        helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 1]),
        helper.make_node("ReduceMean", ["t"], ["m"], axes=[1], keepdims=1),
        helper.make_node("Squeeze", ["m", "one"], ["q"]),
        helper.make_node("LeakyRelu", ["q"], ["l"], alpha=0.2),
        helper.make_node("HardSwish", ["l"], ["h"]),
        helper.make_node("LogSoftmax", ["h"], ["y"], axis=-1),
    ], {"st": np.array([3], dtype=np.int64), "en": np.array([-100], dtype=np.int64), "ax": np.array([2], dtype=np.int64),
        "sp": np.array([-1], dtype=np.int64), "pads": np.array([0, 0, 1, 0, 0, 2], dtype=np.int64),
        "pv": np.array(0.5, dtype=np.float32), "lo": np.array(-1, dtype=np.float32), "hi": np.array(1, dtype=np.float32),
        "one": np.array([1], dtype=np.int64)}, ["N", 3, 5], 14)
    shape = helper.make_tensor("v", TensorProto.FLOAT, [1], [0.25])
    typed = helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])  # float_data, not raw_data
    graph = helper.make_graph([
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("ConstantOfShape", ["s"], ["k"], value=shape),
        helper.make_node("Add", ["x", "k"], ["a"]),
        helper.make_node("Mul", ["a", "w"], ["m"]),
        helper.make_node("Cast", ["i32"], ["i64"], to=TensorProto.INT64),
        helper.make_node("Cast", ["i64"], ["fl"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["m", "fl"], ["y"]),
    ], "constant_of_shape", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [out_info("y")],
        [typed, helper.make_tensor("i32", TensorProto.INT32, [3], [1, -2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.checker.check_model(model)
    write(os.path.join(out, "onnx", "constant_of_shape_op11.onnx"), model.SerializeToString())


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    if os.path.isdir(out):
        shutil.rmtree(out)
    pths = write_pth(out)
    write_zip(out, pths)
    write_pickle(out, pths)
    write_safetensors(out)
    write_checkpoint(out)
    write_idx(out)
    write_image(out)
    write_onnx(out)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(out) for f in fs)
    count = sum(len(fs) for _, _, fs in os.walk(out))
    assert total < 2 << 20, f"corpus is {total} bytes; keep it under 2 MB"
    print(f"{count} seed files, {total} bytes, in {out}")


if __name__ == "__main__":
    main()
