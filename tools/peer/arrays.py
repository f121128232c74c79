"""safetensors files as numpy arrays, for the Python tools and tests: `load_safetensors(path)`
gives (tensors by name, metadata). Needs only numpy (tools/checkpoint/predict.py reads the same
format with the standard library alone, on purpose).
"""
import json
import struct

import numpy as np

DTYPES = {"F32": np.float32, "U32": np.uint32, "F64": np.float64}


def load_safetensors(path):
    """Tensors and metadata of a safetensors file (8-byte header length, JSON header, data)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n :]
    out = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
    return out, meta
