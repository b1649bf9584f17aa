#!/usr/bin/env python3
"""continua against Avalanche on split Fashion-MNIST, strategy by strategy.

Runs `continua run` on the configuration of the peer's measurements (SimpleMLP
784-512-10 with Avalanche's Dropout(0.5), SGD lr 0.01 momentum 0.9, 1 epoch,
train mini-batch 128, eval mini-batch 1000, seed 1234, Avalanche's class order
for that seed), one strategy at a time, with the default thread setting, and
prints continua's average accuracy and whole-process wall time beside
Avalanche's (measured on this kind of machine, see PEERS below), as a Markdown
table; --json writes every run's accuracy matrix too.

  bench/compare_peer.py --bin build/continua [--strategies naive,replay] [--json out.json]

The peer's figures are Avalanche's own implementations (git eb075be) on
Debian's PyTorch 1.13.1 with OpenBLAS, 2-core AMD EPYC: average accuracy, and
train+eval seconds at its faster of 1 and 2 threads. Its scripts are in the
steering repository's shared/peer/ (run_peers.sh) for a side-by-side rerun.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

COMMON = ["--epochs", "1", "--train-mb-size", "128", "--eval-mb-size", "1000", "--lr", "0.01",
          "--momentum", "0.9", "--hidden", "512", "--seed", "1234",
          "--class-order", "4,5,8,2,9,6,1,7,0,3"]

# name: (continua options, Avalanche's average accuracy, Avalanche's best train+eval seconds,
#        Avalanche's accuracy matrix: row i after training experience i)
PEERS = {
    "naive": (["--strategy", "naive"], 0.2482, 34.7, [[1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.9785, 0.0, 0.0, 0.0], [0.0, 0.0005, 0.999, 0.0, 0.0], [0.0, 0.0005, 0.0, 0.999, 0.0], [0.0, 0.0, 0.0, 0.322, 0.919]]),
    "replay": (["--strategy", "replay", "--mem-size", "500"], 0.7860, 53.0,
               [[1.0, 0.0, 0.0, 0.0, 0.0], [0.9175, 0.8775, 0.0, 0.0, 0.0], [0.7385, 0.7415, 0.909, 0.0, 0.0], [0.7145, 0.791, 0.8035, 0.957, 0.0], [0.748, 0.7645, 0.64, 0.8805, 0.897]]),
    "replay-class-balanced": (["--strategy", "replay", "--mem-size", "500", "--replay-policy", "class-balanced"],
                              0.7900, 47.7, [[1.0, 0.0, 0.0, 0.0, 0.0], [0.9155, 0.8755, 0.0, 0.0, 0.0], [0.774, 0.721, 0.913, 0.0, 0.0], [0.692, 0.8125, 0.794, 0.962, 0.0], [0.733, 0.7855, 0.6615, 0.877, 0.893]]),
    "cumulative": (["--strategy", "cumulative"], 0.8524, 75.3, [[1.0, 0.0, 0.0, 0.0, 0.0], [0.941, 0.8665, 0.0, 0.0, 0.0], [0.8695, 0.8605, 0.843, 0.0, 0.0], [0.9025, 0.845, 0.807, 0.945, 0.0], [0.873, 0.8695, 0.75, 0.941, 0.8285]]),
    "ewc": (["--strategy", "ewc", "--ewc-lambda", "1"], 0.2681, 59.6, [[1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.9815, 0.0, 0.0, 0.0], [0.0, 0.0, 0.999, 0.0, 0.0], [0.0, 0.0005, 0.0, 0.999, 0.0], [0.0, 0.0, 0.0, 0.4215, 0.919]]),
    "ewc-online": (["--strategy", "ewc", "--ewc-mode", "online", "--ewc-lambda", "1", "--ewc-decay", "0.9"],
                   0.2687, 58.4, [[1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.9815, 0.0, 0.0, 0.0], [0.0, 0.0, 0.999, 0.0, 0.0], [0.0, 0.0005, 0.0, 0.999, 0.0], [0.0, 0.0, 0.0, 0.4245, 0.919]]),
    "lwf": (["--strategy", "lwf", "--lwf-alpha", "1", "--lwf-temperature", "2"], 0.2258, 37.7,
            [[1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.98, 0.0, 0.0, 0.0], [0.0, 0.001, 1.0, 0.0, 0.0], [0.0, 0.0005, 0.0, 0.999, 0.0], [0.0, 0.0, 0.0, 0.2005, 0.9285]]),
    "si": (["--strategy", "si", "--si-lambda", "1"], 0.2482, 35.9,
        [[1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.9785, 0.0, 0.0, 0.0], [0.0, 0.0005, 0.999, 0.0, 0.0], [0.0, 0.0005, 0.0, 0.999, 0.0], [0.0, 0.0, 0.0, 0.322, 0.919]]),
    "mas": (["--strategy", "mas", "--mas-lambda", "1", "--mas-alpha", "0.5"], 0.1, 54.8,
        [[1.0, 0.0, 0.0, 0.0, 0.0], [0.1445, 0.974, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0, 0.5]]),
    "lfl": (["--strategy", "lfl", "--lfl-lambda", "1"], 0.3154, 31.9,
        [[1.0, 0.0, 0.0, 0.0, 0.0], [0.1155, 0.9715, 0.0, 0.0, 0.0], [0.0525, 0.031, 0.9965, 0.0, 0.0], [0.047, 0.0415, 0.418, 0.993, 0.0], [0.048, 0.028, 0.0985, 0.4995, 0.903]]),
    "gem": (["--strategy", "gem", "--mem-size", "500", "--gem-strength", "0.5"], 0.798, 47.7,
        [[1.0, 0.0, 0.0, 0.0, 0.0], [0.8525, 0.926, 0.0, 0.0, 0.0], [0.7365, 0.737, 0.9195, 0.0, 0.0], [0.7105, 0.764, 0.8115, 0.964, 0.0], [0.763, 0.7555, 0.679, 0.9135, 0.879]]),
    "agem": (["--strategy", "agem", "--mem-size", "500", "--agem-sample-size", "64"], 0.2618, 39.1,
        [[1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.9785, 0.0, 0.0, 0.0], [0.0, 0.0005, 0.999, 0.0, 0.0], [0.0, 0.0005, 0.0, 0.999, 0.0], [0.0, 0.0, 0.0, 0.391, 0.918]]),
    "gdumb": (["--strategy", "gdumb", "--mem-size", "500"], 0.404, 14.1,
        [[0.9675, 0.0, 0.0, 0.0, 0.0], [0.74, 0.745, 0.0, 0.0, 0.0], [0.3045, 0.7265, 0.4935, 0.0, 0.0], [0.1125, 0.6145, 0.419, 0.934, 0.0], [0.0725, 0.617, 0.444, 0.4875, 0.399]]),
    "derpp": (["--strategy", "derpp", "--mem-size", "500", "--der-alpha", "0.1", "--der-beta", "0.5"], 0.7801, 61.9,
        [[1.0, 0.0, 0.0, 0.0, 0.0], [0.9255, 0.88, 0.0, 0.0, 0.0], [0.817, 0.714, 0.906, 0.0, 0.0], [0.836, 0.7485, 0.6775, 0.962, 0.0], [0.86, 0.7485, 0.531, 0.8705, 0.8905]]),
    "er-ace": (["--strategy", "er-ace", "--mem-size", "500"], 0.7915, 49.0,
        [[1.0, 0.0, 0.0, 0.0, 0.0], [0.8935, 0.8725, 0.0, 0.0, 0.0], [0.841, 0.82, 0.77, 0.0, 0.0], [0.7395, 0.8115, 0.7985, 0.9155, 0.0], [0.7095, 0.803, 0.6785, 0.9055, 0.861]]),
    "icarl": (["--strategy", "icarl", "--mem-size", "500"], 0.6865, 50.3,
        [[0.972, 0.0, 0.0, 0.0, 0.0], [0.8655, 0.7055, 0.0, 0.0, 0.0], [0.8125, 0.5715, 0.609, 0.0, 0.0], [0.6895, 0.6005, 0.583, 0.9125, 0.0], [0.658, 0.636, 0.5105, 0.874, 0.754]]),
}

# Strategies PEERS.md has no Avalanche figure for (Avalanche's own versions of
# some exist but were not measured there): continua's figures only.
NO_PEER = {
    "der": ["--strategy", "der", "--mem-size", "500"],
    "rwalk": ["--strategy", "rwalk"],
    "mir": ["--strategy", "mir", "--mem-size", "500"],
    "er-aml": ["--strategy", "er-aml", "--mem-size", "500"],
    "bic": ["--strategy", "bic", "--mem-size", "500"],
    "cope": ["--strategy", "cope", "--mem-size", "500"],
    "gss": ["--strategy", "gss", "--mem-size", "500"],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/continua")
    ap.add_argument("--strategies", default=",".join(list(PEERS) + list(NO_PEER)))
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=None, help="write every run's figures and matrices here")
    ap.add_argument("--extra", default="", help="more continua options, e.g. '--threads 1'")
    args = ap.parse_args()
    rows, out = [], {}
    print("| strategy | continua avg acc | Avalanche avg acc | difference | continua s | Avalanche s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for name in args.strategies.split(","):
        opts, peer_acc, peer_s, peer_matrix = PEERS[name] if name in PEERS else (NO_PEER[name], None, None, None)
        with tempfile.TemporaryDirectory() as d:
            cmd = [args.bin, "run", *COMMON, *opts, "--verbosity", "quiet", "--out", d, *args.extra.split()]
            if args.data_dir:
                cmd += ["--data-dir", args.data_dir]
            t0 = time.monotonic()
            subprocess.run(cmd, check=True)
            seconds = time.monotonic() - t0
            with open(os.path.join(d, "results.json")) as f:
                res = json.load(f)
        acc = res["average_accuracy"]
        if peer_acc is None:
            print(f"| {name} | {acc:.4f} | n/a | | {seconds:.1f} | n/a | |", flush=True)
        else:
            print(f"| {name} | {acc:.4f} | {peer_acc:.4f} | {acc - peer_acc:+.4f} | {seconds:.1f} | {peer_s:.1f} | "
                  f"{peer_s / seconds:.1f}x |", flush=True)
        shown = [c for c in cmd if c != d]
        out[name] = {"command": " ".join(shown), "average_accuracy": acc,
                     "seconds": seconds, "accuracy_matrix": res["accuracy_matrix"],
                     "peer_average_accuracy": peer_acc, "peer_seconds": peer_s, "peer_accuracy_matrix": peer_matrix}
    print("\nAccuracy matrices (row i: after training experience i; columns: test experiences), "
          "continua | Avalanche:")
    for name, r in out.items():
        print(f"\n{name}:\n```")
        for i, mine in enumerate(r["accuracy_matrix"]):
            left = " ".join(f"{v:.3f}" for v in mine)
            peer = r["peer_accuracy_matrix"]
            print(f"{left}  |  {' '.join(f'{v:.3f}' for v in peer[i])}" if peer else left)
        print("```")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
