#!/usr/bin/env python3
"""Reads a safetensors file using only the published layout (json + numpy) and
prints {tensor name: sum of its values} as JSON. An independent check that
continua checkpoints are plain safetensors files: it shares no code with
continua. Usage: read_safetensors.py FILE"""
import json
import struct
import sys

import numpy as np

DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8",
          "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def main(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert 8 + n <= len(raw), "header length past end of file"
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    buffer = raw[8 + n:]
    header.pop("__metadata__", None)
    entries = sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))
    end = 0
    sums = {}
    for name, info in entries:
        begin, stop = info["data_offsets"]
        assert begin == end, f"{name}: tensors must be contiguous"
        end = stop
        values = np.frombuffer(buffer[begin:stop], dtype=DTYPES[info["dtype"]])
        if info["dtype"] == "BF16":  # bfloat16 is the top half of a float32
            values = (values.astype(np.uint32) << 16).view(np.float32)
        values = values.reshape(info["shape"])
        if values.dtype.kind in "iub":
            sums[name] = int(values.astype(np.int64).sum())
        else:
            sums[name] = float(values.astype(np.float64).sum())
    assert end == len(buffer), "bytes after the last tensor"
    print(json.dumps(sums, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
