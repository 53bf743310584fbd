#!/usr/bin/python3
"""Reads a safetensors file with nothing but the format's spec and numpy, and prints one line per
tensor: name, shape, and the sum of its values. Used by io_test to prove distbelief's checkpoints
are standard safetensors."""
import json
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64}


def main(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    meta = header.pop("__metadata__", {})
    assert all(isinstance(v, str) for v in meta.values()), "metadata values must be strings"
    end = 0
    for name in sorted(header):
        info = header[name]
        begin, stop = info["data_offsets"]
        arr = np.frombuffer(data[begin:stop], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        end = max(end, stop)
        print(f"{name} {list(arr.shape)} {float(arr.astype(np.float64).sum()):.6f}")
    assert end == len(data), "data section must be fully covered"
    print("metadata", " ".join(sorted(meta)))


if __name__ == "__main__":
    main(sys.argv[1])
