#!/usr/bin/env python3
"""Fails when a source includes a layer above its own (docs/architecture.md).

Each layer may include only the layers before it in LAYERS (and itself);
continua/errors.h and continua/continua.h (the umbrella) stand outside the
layers. Usage: check_layers.py ROOT   (ROOT has src/ and include/continua/)
       check_layers.py --self-test   (a planted violation must be caught)
"""
import os
import re
import sys
import tempfile

LAYERS = ["io", "format", "state", "checkpoint", "data", "models", "evaluation", "training",
          "distributed", "cli"]
OUTSIDE = {"errors.h", "continua.h"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"(?:continua/)?([a-z_]+)/')


def layer_of(rel):
    parts = rel.split(os.sep)
    if parts[0] == "include" and len(parts) > 2:
        return parts[2] if len(parts) > 3 else None
    if parts[0] == "src" and len(parts) > 2:
        return parts[1]
    return None


def check(root):
    problems = []
    for top in ("src", os.path.join("include", "continua")):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for f in files:
                if not f.endswith((".h", ".cc")):
                    continue
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, root)
                own = layer_of(rel)
                if own not in LAYERS:
                    continue
                with open(path, encoding="utf-8") as fh:
                    for n, line in enumerate(fh, 1):
                        m = INCLUDE.match(line)
                        if not m or m.group(1) not in LAYERS:
                            continue
                        dep = m.group(1)
                        if LAYERS.index(dep) > LAYERS.index(own):
                            problems.append(f"{rel}:{n}: layer '{own}' includes '{dep}', a layer above it")
    return problems


def self_test():
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "src", "checkpoint"))
        with open(os.path.join(d, "src", "checkpoint", "bad.cc"), "w") as f:
            f.write('#include "continua/state/state_tree.h"\n#include "continua/training/strategy.h"\n')
        found = check(d)
        return len(found) == 1 and "training" in found[0]


def main():
    if sys.argv[1:] == ["--self-test"]:
        ok = self_test()
        print("self-test:", "the planted violation was caught" if ok else "MISSED the planted violation")
        return 0 if ok else 1
    problems = check(sys.argv[1])
    for p in problems:
        print(p)
    print(f"{len(problems)} layer violation(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
