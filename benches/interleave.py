"""Times whole commands for the benchmark scripts (benches/*/…sh), interleaved: the order is
rotated each round, so drift on a shared machine hits every command alike. With hyperfine when
asked (-N, no shell), else a python3 loop after 3 warm-up rounds. Returns wall seconds per run
and user + system CPU seconds (hyperfine: the mean of each round)."""

import json
import os
import resource
import shlex
import subprocess
import time


def loop(argv, names, runs, times, cpu=None):
    """Runs argv[n] for each of `names` round-robin, appending to times[n] (and cpu[n])."""
    for i in range(runs + 3):
        for n in names[i % len(names):] + names[:i % len(names)]:
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(argv[n], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            t1 = time.perf_counter()
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            if i >= 3:
                times[n].append(t1 - t0)
                if cpu is not None:
                    cpu[n].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)


def measure(commands, runs, rounds, tool, work):
    """`commands`: name -> command line. Returns (times, cpu), each name -> list of seconds."""
    names = list(commands)
    times = {n: [] for n in names}
    cpu = {n: [] for n in names}
    if tool != "hyperfine":
        loop({n: shlex.split(c) for n, c in commands.items()}, names, runs, times, cpu)
        return times, cpu
    per_round = -(-runs // rounds)
    for r in range(rounds):
        k = r % len(names)
        order = names[k:] + names[:k]
        out = os.path.join(work, f"round{r}.json")
        # -N: no intermediate shell; hyperfine sends output to /dev/null (not a terminal).
        run = subprocess.run(["hyperfine", "-N", "--style", "none", "--warmup", "3",
                              "--runs", str(per_round), "--export-json", out]
                             + [commands[n] for n in order], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, check=False)
        if run.returncode != 0:  # its warnings (outliers, caches) are noise; errors are not
            raise SystemExit(f"hyperfine failed:\n{run.stderr}")
        with open(out) as f:
            for res in json.load(f)["results"]:
                name = next(n for n in names if commands[n] == res["command"])
                times[name].extend(res["times"])
                cpu[name].append(res["user"] + res["system"])
    return times, cpu
