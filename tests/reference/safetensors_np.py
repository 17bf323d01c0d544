"""A safetensors reader for the reference scripts, written from the format's description:
8 bytes little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then the data.

read_safetensors(path) -> {name: numpy array}; BF16 is widened to float32 (its bits are the top half of
a float32), everything else keeps its dtype, little-endian.
"""
import json
import struct

import numpy as np

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "U8": np.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        if e["dtype"] == "BF16":
            arr = (np.frombuffer(data[b:end], dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(data[b:end], dtype=np.dtype(DTYPES[e["dtype"]]).newbyteorder("<"))
        out[name] = arr.reshape(e["shape"])
    return out
