#!/usr/bin/env python3
"""Converts a continua checkpoint's model into a PyTorch state_dict file.

    to_state_dict.py CKPT OUT.pt [--prefix strategy.model.]

Reads the checkpoint with json + numpy only (it is a plain safetensors file,
docs/checkpoint-format.md), keeps the tensors under the prefix with the prefix
removed ("strategy.model.features.0.weight" -> "features.0.weight"), and
writes them with torch.save as an OrderedDict. The result loads with
model.load_state_dict(torch.load("OUT.pt")) into the equivalent torch.nn
module; for SimpleMLP:

    features = nn.Sequential(nn.Linear(in, hidden), nn.ReLU()[, nn.Dropout(p)], ...)
    classifier = nn.Module(); classifier.head = nn.Linear(hidden, classes)
    forward(x) = classifier.head(features(x.flatten(1)))

The model's constructor options (continua's "strategy.model.options") are
printed, so the module can be built with the same sizes. Exits 1 with a
message naming the file for a file that is not a safetensors checkpoint or
holds no tensor under the prefix.
"""
import argparse
import collections
import json
import struct
import sys

import numpy as np

DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8",
          "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def read_tensors(path, prefix):
    """{name without prefix: numpy array} and the __metadata__ of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("shorter than a safetensors header")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError("header length past the end of the file")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    buffer = raw[8 + n:]
    metadata = header.pop("__metadata__", {}) or {}
    out = collections.OrderedDict()
    for name in sorted(header):
        if not name.startswith(prefix):
            continue
        info = header[name]
        if info["dtype"] not in DTYPES:
            raise ValueError(f"tensor {name}: unsupported dtype {info['dtype']}")
        begin, stop = info["data_offsets"]
        if not 0 <= begin <= stop <= len(buffer):
            raise ValueError(f"tensor {name}: data offsets outside the file")
        values = np.frombuffer(buffer[begin:stop], dtype=DTYPES[info["dtype"]])
        out[name[len(prefix):]] = (info["dtype"], values.reshape(info["shape"]))
    return out, metadata


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--prefix", default="strategy.model.")
    args = ap.parse_args(argv)
    try:
        tensors, metadata = read_tensors(args.checkpoint, args.prefix)
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        sys.exit(f"to_state_dict.py: '{args.checkpoint}': not a readable safetensors checkpoint: {e}")
    if not tensors:
        sys.exit(f"to_state_dict.py: '{args.checkpoint}': no tensor under '{args.prefix}'")
    import torch  # only needed for writing

    state_dict = collections.OrderedDict()
    for name, (dtype, values) in tensors.items():
        if dtype == "BF16":
            t = torch.from_numpy(values.view(np.int16).copy()).view(torch.bfloat16)
        else:
            t = torch.from_numpy(values.copy())
        state_dict[name] = t
    torch.save(state_dict, args.out)
    options = None
    try:
        state = json.loads(metadata.get("continua.state", "{}"))
        options = state.get(args.prefix + "options")
    except ValueError:
        pass
    for name, t in state_dict.items():
        print(f"{name}\t{str(t.dtype).replace('torch.', '')}\t{list(t.shape)}")
    if options is not None:
        print("model options:", json.dumps(options, sort_keys=True))
    print(f"wrote {len(state_dict)} tensors to {args.out}")


if __name__ == "__main__":
    main()
