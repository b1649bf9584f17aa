#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/dataset_fuzzer.cc (fuzz/corpus-dataset/)
and fuzz/config_fuzzer.cc (fuzz/corpus-config/).

Dataset seeds are one mode byte (see dataset_fuzzer.cc) and a small valid
file of that format: IDX (plain and gzip), CIFAR-10/100 records, .npy of
several dtypes and orders, .npz (stored and deflated), CSV with and without
a header, PNG (grey, RGB, palette, 16-bit, interlaced) and JPEG (RGB and
grey, made once with TurboJPEG and kept here as base64). Config seeds are
YAML files as users write them. Standard library only:
python3 fuzz/make_dataset_corpus.py
"""
import base64
import gzip
import io
import os
import struct
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
JPEG_RGB = base64.b64decode("/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRT/2wBDAQMEBAUEBQkFBQkUDQsNFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBT/wAARCAAEAAQDASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwD3fwP+xF8Jf+Edg/4p/wD8eX/4miiiug5z/9k=")
JPEG_GREY = base64.b64decode("/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRT/wAALCAAEAAQBAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/APkDTPhroP2Rf9E/Uf4V/9k=")


def idx(dims, data):
    return struct.pack(">HBB", 0, 8, len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


def npy(descr, shape, data, fortran=False, major=1):
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, "True" if fortran else "False", "(%s)" % "".join("%d, " % d for d in shape).rstrip(" ")
        if len(shape) != 1 else "(%d,)" % shape[0])
    pre = 10 if major == 1 else 12
    header += " " * ((64 - (pre + len(header) + 1) % 64) % 64) + "\n"
    size = struct.pack("<H", len(header)) if major == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([major, 0]) + size + header.encode("latin1") + data


def npz(members, deflate):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def png(width, height, color_type, bit_depth, rows, palette=None, interlace=0):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + r for r in rows)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace))
    if palette:
        out += chunk(b"PLTE", palette)
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def dataset_seeds():
    f4 = struct.pack("<6f", 0.5, 1, 2, 3, 4, 5.5)
    seeds = {
        "idx_images": (0, idx([2, 2, 2], range(8))),
        "idx_labels": (0, idx([3], [0, 1, 2])),
        "idx_gzip": (0, gzip.compress(idx([2, 2, 2], range(8)), mtime=0)),
        "cifar10": (1, bytes([3]) + bytes(range(256)) * 12 + bytes([9]) + bytes(3072)),
        "cifar100": (2, bytes([4, 40]) + bytes(range(256)) * 12),
        "cifar100_coarse": (3, bytes([19, 99]) + bytes(3072)),
        "npy_f4": (4, npy("<f4", (2, 3), f4)),
        "npy_u1": (4, npy("|u1", (2, 2, 2), bytes(range(8)))),
        "npy_i8": (4, npy("<i8", (3,), struct.pack("<3q", 0, 1, 2))),
        "npy_f8_fortran": (4, npy("<f8", (2, 2), struct.pack("<4d", 1, 2, 3, 4), fortran=True)),
        "npy_be_i4_v2": (4, npy(">i4", (2,), struct.pack(">2i", 1, 0), major=2)),
        "npy_bool_v3": (4, npy("|b1", (2,), bytes([1, 0]), major=3)),
        "npz_stored": (5, npz([("train_x.npy", npy("<f4", (2, 3), f4)),
                                ("train_y.npy", npy("<i8", (2,), struct.pack("<2q", 0, 1)))], False)),
        "npz_deflated": (5, npz([("train_x.npy", npy("|u1", (2, 2, 2), bytes(range(8)))),
                                  ("train_y.npy", npy("|u1", (2,), bytes([1, 0])))], True)),
        "csv_header": (6, b"a,b,c,label\n1,2,3,0\n4,5,6,1\n"),
        "csv_names": (6, b"0.5,1.5,cat\n2,3,dog\n-1e3,4,cat\n"),
        "csv_quoted_crlf": (6, b'"x","y","label"\r\n1,"2",3\r\n'),
        "csv_spec": (7, b"1,2,3,0\n4,5,6,2\n"),
        "png_grey": (8, png(2, 2, 0, 8, [b"\x00\xff", b"\x80\x40"])),
        "png_rgb": (8, png(2, 1, 2, 8, [bytes(range(6))])),
        "png_rgba16": (8, png(1, 1, 6, 16, [bytes(range(8))])),
        "png_palette": (8, png(2, 1, 3, 8, [b"\x00\x01"], palette=b"\xff\x00\x00\x00\xff\x00")),
        "png_grey1_interlaced": (8, png(3, 3, 0, 1, [b"\xa0", b"\x40", b"\xe0"], interlace=1)),
        "jpeg_rgb": (8, JPEG_RGB),
        "jpeg_grey": (8, JPEG_GREY),
    }
    return seeds


CONFIG_SEEDS = {
    "plain": b"strategy: replay\nmem-size: 500\nlr: 0.05\nexperiences: 5\n",
    "underscores": b"mem_size: 200\nvalidation_split: 0.1\ntask_labels: true\n",
    "dashes_and_lists": b"--class-order: 4,5,8,2,9,6,1,7,0,3\nrotations: '0,45,90'\nonline-boundaries: false\n",
    "empty": b"",
    "comment": b"# a comment only\n",
    "anchors": b"lr: &x 0.1\nbenchmark: split-fmnist\n",
    "flow": b"{strategy: gem, experiences: 3}\n",
}


def main():
    for folder, seeds in (("corpus-dataset", {k: bytes([m]) + v for k, (m, v) in dataset_seeds().items()}),
                          ("corpus-config", CONFIG_SEEDS)):
        out = os.path.join(HERE, folder)
        os.makedirs(out, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(out, name), "wb") as f:
                f.write(data)
        print("%d seeds in %s" % (len(seeds), out))


if __name__ == "__main__":
    main()
