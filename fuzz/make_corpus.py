#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/reader_fuzzer.cc into fuzz/corpus/.

Each seed is one mode byte (0: file as is, 1: file whose header CRC the
fuzzer recomputes, 2: metadata map "k\\0v\\0...") followed by the payload.
Valid files follow docs/checkpoint-format.md and carry the metadata of a
strategy checkpoint; broken ones cover one failure mode each. Standard
library only; run from anywhere: python3 fuzz/make_corpus.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")
PREFIX = '{"__metadata__":{"header_crc32c":"'


def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


TABLE = _table()


def crc32c(b, crc=0):
    crc ^= 0xFFFFFFFF
    for x in b:
        crc = TABLE[(crc ^ x) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def seal(header: str, data: bytes, pad=True) -> bytes:
    h = header.encode()
    if pad and (8 + len(h)) % 64:
        h += b" " * (64 - (8 + len(h)) % 64)
    f = bytearray(struct.pack("<Q", len(h)) + h)
    if h.startswith(PREFIX.encode()):
        pos = 8 + len(PREFIX)
        f[pos:pos + 8] = b"00000000"
        f[pos:pos + 8] = b"%08x" % crc32c(bytes(f))
    return bytes(f) + data


def checkpoint(tensors, meta, version="1", entries_override=None):
    """tensors: list of (name, dtype, shape, bytes); laid out in order."""
    data = b""
    entries = []
    crcs = {}
    size = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2}
    # The writer's order: element size descending, then name (keeps alignment).
    tensors = sorted(tensors, key=lambda t: (-size.get(t[1], 1), t[0]))
    for name, dtype, shape, raw in tensors:
        entries.append((name, {"dtype": dtype, "shape": shape,
                               "data_offsets": [len(data), len(data) + len(raw)]}))
        crcs[name] = "%08x" % crc32c(raw)
        data += raw
    if entries_override is not None:
        entries = entries_override
    head = PREFIX + '00000000","format":"continua-checkpoint","format_version":' + \
        json.dumps(version) + ',"tensor_crc32c":' + json.dumps(json.dumps(crcs, separators=(",", ":")))
    for k in sorted(meta):
        head += "," + json.dumps(k) + ":" + json.dumps(meta[k])
    head += "}"
    for name, e in entries:
        head += "," + json.dumps(name) + ":" + json.dumps(e, separators=(",", ":"))
    head += "}"
    return seal(head, data)


def strategy_meta(state=None, objects=None, devices=None, excluded=None, next_exp="2", extra=None):
    state = state if state is not None else {
        "strategy.clock.train_iterations": 12, "strategy.clock.train_experiences": 2,
        "strategy.loop.experience": -1, "strategy.loop.loss_sum": 0.5,
        "strategy.plugin_names": ["replay"], "strategy.device": "cpu",
        "strategy.plugins.replay.policy": "reservoir", "strategy.plugins.replay.mem_size": 50}
    objects = objects if objects is not None else {
        "strategy.plugins.replay.benchmark": {"type": "split-synthetic", "args": {
            "experiences": 5, "seed": 1, "subset": 0,
            "dataset": {"samples_per_class": 40, "classes": 10, "features": 20, "seed": 1}}}}
    m = {"continua.kind": "strategy",
         "continua.state": json.dumps(state) if not isinstance(state, str) else state,
         "continua.objects": json.dumps(objects) if not isinstance(objects, str) else objects,
         "continua.devices": json.dumps(devices or {}),
         "continua.excluded": json.dumps(excluded or []),
         "continua.next_experience": next_exp}
    m.update(extra or {})
    return m


F32 = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
I64 = struct.pack("<3q", 7, 8, 9)
TENSORS = [("strategy.model.fc.weight", "F32", [2, 3], F32),
           ("strategy.plugins.replay.positions", "I64", [3], I64)]
# Ordered as the writer orders them: larger element size first.
TENSORS = [TENSORS[1], TENSORS[0]]


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    seeds = {}
    good = checkpoint(TENSORS, strategy_meta())
    seeds["valid_strategy"] = good
    seeds["valid_empty"] = checkpoint([], strategy_meta(state={}, objects={}))
    seeds["valid_not_strategy"] = checkpoint(TENSORS, {"step": "100"})
    seeds["valid_all_dtypes"] = checkpoint(
        [("strategy.a", "F64", [1], b"\0" * 8), ("strategy.b", "I32", [2], b"\1" * 8),
         ("strategy.c", "F16", [1], b"\2" * 2), ("strategy.d", "BF16", [1], b"\3" * 2),
         ("strategy.e", "I16", [1], b"\4" * 2), ("strategy.f", "U8", [3], b"\5" * 3),
         ("strategy.g", "I8", [1], b"\6"), ("strategy.h", "BOOL", [1], b"\1"),
         ("strategy.z", "F32", [0, 4], b"")], strategy_meta())
    seeds["truncated"] = good[:-5]
    seeds["bad_header_crc"] = good[:9] + b"X" + good[10:]
    flipped = bytearray(good)
    flipped[-1] ^= 1
    seeds["bad_tensor_crc"] = bytes(flipped)
    seeds["plain_safetensors"] = seal('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
                                      b"\0" * 8, pad=False)
    seeds["version_2"] = checkpoint(TENSORS, strategy_meta(), version="2")
    e = lambda n, d, s, o: (n, {"dtype": d, "shape": s, "data_offsets": o})
    seeds["terabyte"] = checkpoint([], strategy_meta(), entries_override=[
        e("strategy.x", "F32", [1 << 38], [0, 1 << 40])])
    seeds["overlap"] = checkpoint(TENSORS, strategy_meta(), entries_override=[
        e("strategy.a", "I64", [3], [0, 24]), e("strategy.b", "I64", [3], [8, 32])])
    seeds["negative_offset"] = checkpoint(TENSORS, strategy_meta(), entries_override=[
        e("strategy.a", "I64", [3], [-8, 16])])
    seeds["unknown_dtype"] = checkpoint(TENSORS, strategy_meta(), entries_override=[
        e(TENSORS[0][0], "F8_E4M3", [24], [0, 24]), e(TENSORS[1][0], "F32", [2, 3], [24, 48])])
    seeds["nested_state"] = checkpoint(TENSORS, strategy_meta(state="[" * 100 + "]" * 100))
    seeds["wrong_types"] = checkpoint(TENSORS, strategy_meta(
        state={"strategy.clock.train_iterations": "12"}, objects=[], next_exp="-1"))
    seeds["key_outside_root"] = checkpoint(TENSORS, strategy_meta(state={"evil": 1}))
    for name, raw in seeds.items():
        modes = (0, 1) if name.startswith("valid") else (1,)
        if name in ("truncated", "bad_header_crc", "bad_tensor_crc", "plain_safetensors"):
            modes = (0,)
        for m in modes:
            with open(os.path.join(OUT, "%s_m%d" % (name, m)), "wb") as f:
                f.write(bytes([m]) + raw)
    # Mode 2: metadata maps.
    for name, meta in {"meta_valid": strategy_meta(),
                       "meta_wrong_types": strategy_meta(state="[]", next_exp="1x"),
                       "meta_devices": strategy_meta(devices={"strategy.w": "cuda:0"})}.items():
        payload = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in sorted(meta.items()))
        with open(os.path.join(OUT, name + "_m2"), "wb") as f:
            f.write(b"\2" + payload)
    print("wrote %d seeds to %s" % (len(os.listdir(OUT)), OUT))


if __name__ == "__main__":
    main()
