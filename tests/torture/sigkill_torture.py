#!/usr/bin/python3
"""SIGKILL torture for `continua run --checkpoint-dir`.

For each strategy: one uninterrupted reference run, then the same run with
`--checkpoint-dir D --checkpoint-every 7`, killed with SIGKILL and restarted
until it finishes. The finished run must equal the reference bit for bit:
results.json's state_digest and accuracy_matrix, and the metrics.jsonl (but
for the wall times of its "costs" rows) and
metrics.csv files byte for byte. No restart may warn about a damaged
checkpoint (SIGKILL cannot damage an atomically written one).

Kills land at three kinds of instants, chosen at random:
  random  - a uniformly random time in the run
  write   - while a checkpoint's temporary file exists (a save in progress)
  rename  - just after a new checkpoint file appeared (renamed) and before
            the directory fsync returned
The last two widen their windows with CONTINUA_TEST_SAVE_DELAY_MS (a
test-only hook of the checkpoint manager). Besides the SIGKILLs, each
strategy is stopped once by SIGTERM at a random time: it must save, say
"stopped by SIGTERM" and exit 75, and its resumed run must equal the
reference too.

Usage: sigkill_torture.py --bin build/continua [--kills-per-strategy N]
       [--strategies naive,replay] [--seed S] [--keep DIR]
Exit 0 when every strategy matched its reference; 1 otherwise.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time



def registered_strategies(binary):
    """Every strategy the binary registers (`continua strategies --json`)."""
    out = subprocess.run([binary, "strategies", "--json"], check=True, capture_output=True, text=True).stdout
    return [s["name"] for s in json.loads(out)]

SAVE_DELAY_MS = 150
STOPPED_BY_SIGNAL = 75  # continua run: stopped by a signal, checkpoint saved (src/cli/signals.h)


def run_args(binary, strategy, out, extra):
    return [binary, "run", "--benchmark", "split-synthetic", "--experiences", "5",
            "--epochs", "3", "--train-mb-size", "16", "--hidden", "64", "--seed", "3",
            "--strategy", strategy, "--mem-size", "60", "--threads", "1",
            "--verbosity", "quiet", "--out", out] + extra


def read(path):
    with open(path, "rb") as f:
        return f.read()


def without_costs(data):
    """metrics.jsonl without its "costs" rows (wall times differ between runs); their number stays."""
    lines = data.decode().splitlines(keepends=True)
    kept = [l for l in lines if json.loads(l).get("event") != "costs"]
    return "".join(kept).encode(), len(lines) - len(kept)


def results(out):
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


def ckpt_names(d):
    try:
        return set(os.listdir(d))
    except FileNotFoundError:
        return set()


def kill_one(binary, strategy, out, ckdir, mode, duration, rng, log):
    """Starts one run and SIGKILLs it per `mode` ("term": SIGTERMs it at a random time, a clean
    stop that must save and exit 75). Returns (interrupted, returncode, stderr)."""
    env = dict(os.environ)
    if mode in ("write", "rename"):
        env["CONTINUA_TEST_SAVE_DELAY_MS"] = str(SAVE_DELAY_MS)
    errf = tempfile.TemporaryFile()
    p = subprocess.Popen(run_args(binary, strategy, out,
                                  ["--checkpoint-dir", ckdir, "--checkpoint-every", "7",
                                   "--keep-last", "2"]),
                         stdout=subprocess.DEVNULL, stderr=errf, env=env)
    start = time.monotonic()
    deadline = start + (rng.uniform(0.0, duration) if mode == "random" else duration * 4 + 5)
    before = {n for n in ckpt_names(ckdir) if n.endswith(".safetensors")}
    killed = False
    # In "write"/"rename" mode, skip a random number of saves first so kills
    # spread over the run rather than all hitting its first save.
    skip = rng.randrange(0, 4) if mode != "random" else 0
    seen_tmp = set()
    armed = False
    while p.poll() is None:
        now = time.monotonic()
        if mode == "term" and not armed:
            # The stop is tried once the run checkpoints (a signal before
            # the handlers exist ends the process: nothing to save yet).
            if {n for n in ckpt_names(ckdir) if n.endswith(".safetensors")} - before:
                armed = True
                deadline = now + rng.uniform(0.0, duration / 3)
        if mode == "term" and armed and now >= deadline:
            # A clean stop: the run saves where it is and exits 75.
            p.send_signal(signal.SIGTERM)
            rc = p.wait()
            errf.seek(0)
            err = errf.read().decode(errors="replace")
            stopped = rc == STOPPED_BY_SIGNAL
            if stopped and "stopped by SIGTERM" not in err:
                err += "\nwarning: exit 75 without the stop message"
            # A SIGTERM that lands while the finished run tears its handlers
            # down ends it by the signal: an interruption like a SIGKILL.
            ended = rc == -signal.SIGTERM
            log(f"    {mode:6s} after {time.monotonic() - start:5.2f}s: "
                f"{'stopped' if stopped else 'ended by SIGTERM' if ended else 'exit ' + str(rc)}")
            return stopped or ended, rc, err
        if mode == "random" and now >= deadline:
            p.send_signal(signal.SIGKILL)
            killed = True
            break
        if mode in ("write", "rename"):
            names = ckpt_names(ckdir)
            if mode == "write":
                tmps = {n for n in names if ".tmp." in n} - seen_tmp
                if tmps:
                    seen_tmp |= tmps
                    if skip == 0:
                        time.sleep(rng.uniform(0, SAVE_DELAY_MS / 1000.0))
                        p.send_signal(signal.SIGKILL)
                        killed = True
                        break
                    skip -= 1
            else:
                new = {n for n in names if n.endswith(".safetensors")} - before
                if new:
                    before |= new
                    if skip == 0:
                        p.send_signal(signal.SIGKILL)
                        killed = True
                        break
                    skip -= 1
            if now >= deadline:
                break
        time.sleep(0.002)
    rc = p.wait()
    errf.seek(0)
    err = errf.read().decode(errors="replace")
    if killed and rc != -signal.SIGKILL:
        killed = False  # it finished before the kill landed
    log(f"    {mode:6s} after {time.monotonic() - start:5.2f}s: "
        f"{'killed' if killed else 'exit ' + str(rc)}")
    return killed, rc, err


def compare(strategy, ref, out, kills, log):
    ok = True
    a, b = results(ref), results(out)
    for key in ("state_digest", "accuracy_matrix", "complete", "initial_accuracy", "forward_transfer"):
        if a[key] != b[key]:
            log(f"{strategy}: {key} differs after {kills} kills:\n  reference {a[key]}\n  resumed   {b[key]}")
            ok = False
    for name in ("metrics.jsonl", "metrics.csv"):
        a_data, b_data = read(os.path.join(ref, name)), read(os.path.join(out, name))
        if name == "metrics.jsonl":
            a_data, b_data = without_costs(a_data), without_costs(b_data)
        if a_data != b_data:
            log(f"{strategy}: {name} differs from the reference after {kills} kills")
            ok = False
    return ok


def torture(binary, strategy, kills, rng, work, log):
    ref = os.path.join(work, strategy + "-ref")
    t0 = time.monotonic()
    r = subprocess.run(run_args(binary, strategy, ref, []), capture_output=True, text=True)
    duration = time.monotonic() - t0
    if r.returncode != 0:
        log(f"{strategy}: reference run failed ({r.returncode}):\n{r.stderr}")
        return False, 0
    out = os.path.join(work, strategy + "-out")
    ckdir = os.path.join(work, strategy + "-ckpt")
    log(f"{strategy}: reference {duration:.2f}s, digest {results(ref)['state_digest'][:16]}")
    done_kills = 0
    since_fresh = 0   # kills since the output and checkpoints were fresh
    completions = 0
    attempts = 0
    ok = True
    terms = 0  # one SIGTERM per strategy besides the SIGKILLs
    while attempts < kills * 6 + 10:
        attempts += 1
        last = done_kills >= kills and terms >= 1
        if last:
            mode = "none"
            env = dict(os.environ)
            p = subprocess.run(run_args(binary, strategy, out,
                                        ["--checkpoint-dir", ckdir, "--checkpoint-every", "7",
                                         "--keep-last", "2"]),
                               capture_output=True, text=True, env=env)
            killed, rc, err = False, p.returncode, p.stderr
        else:
            mode = "term" if terms < 1 and (done_kills >= kills or rng.random() < 0.5) else \
                rng.choice(["random", "random", "write", "rename"])
            killed, rc, err = kill_one(binary, strategy, out, ckdir, mode, duration, rng, log)
            if killed and mode == "term":
                terms += rc == STOPPED_BY_SIGNAL
                since_fresh += 1
                continue
        if "warning" in err or "error" in err:
            log(f"{strategy}: unexpected message from a restarted run:\n{err}")
            ok = False
        if killed:
            done_kills += 1
            since_fresh += 1
            n = [x for x in ckpt_names(ckdir) if x.endswith(".safetensors")]
            if len(n) > 3:
                log(f"{strategy}: {len(n)} checkpoints kept with --keep-last 2: {sorted(n)}")
                ok = False
            continue
        if rc != 0:
            log(f"{strategy}: run exited with {rc}:\n{err}")
            return False, done_kills
        # Finished: must equal the reference; then start afresh if kills remain.
        completions += 1
        if not compare(strategy, ref, out, since_fresh, log):
            ok = False
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(ckdir, ignore_errors=True)
        since_fresh = 0
        if last:
            break
    log(f"{strategy}: {'OK' if ok else 'FAILED'}: {done_kills} kills, {terms} SIGTERM stops, {completions} completed "
        f"runs compared with the reference, {attempts} starts")
    return ok and completions > 0, done_kills


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--kills-per-strategy", type=int, default=2)
    ap.add_argument("--strategies", default=None, help="comma list (default: every registered strategy)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", default=None, help="work in this directory and keep it")
    args = ap.parse_args()
    if args.strategies is None:
        args.strategies = ",".join(registered_strategies(args.bin))
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    work = args.keep or tempfile.mkdtemp(prefix="continua-torture-")
    os.makedirs(work, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    log(f"torture seed {seed} (rerun with --seed {seed}), work dir {work}")
    t0 = time.monotonic()
    all_ok = True
    total = 0
    try:
        for s in args.strategies.split(","):
            ok, kills = torture(args.bin, s, args.kills_per_strategy, rng, work, log)
            all_ok &= ok
            total += kills
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    log(f"{'PASSED' if all_ok else 'FAILED'}: {total} SIGKILLs survived over "
        f"{args.strategies}, {time.monotonic() - t0:.0f}s")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
