#!/usr/bin/env bash
# Benchmark of the vault's read path: `talvault bundle export` against `age -d` on the same
# bundle.age, plus `talvault env show` (no decryption). Prints medians and the export/age ratio.
# A benchmark, not a test: it never fails on slow numbers. See README.md beside it.
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-60}     # runs per command (at least 30)
ROUNDS=${ROUNDS:-6}  # hyperfine rounds, command order rotated each round
TOOL=${TOOL:-auto}   # auto | hyperfine | python
SCALE=${SCALE:-500}  # then export again with this many audit events in the environment (0: skip)

for t in age age-keygen python3; do
    command -v "$t" >/dev/null || { echo "bench: $t is required" >&2; exit 2; }
done
if [[ $TOOL == auto ]]; then
    if command -v hyperfine >/dev/null; then TOOL=hyperfine; else TOOL=python; fi
fi

cargo build --release --locked --bin talvault >&2
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release/talvault"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A private HOME and TMPDIR, and nothing inherited from the caller's shell.
export HOME="$work/home" TMPDIR="$work/tmp" TALVAULT_ACTOR=bench
export TALVAULT_IDENTITY= SOPS_AGE_KEY_FILE= TALVAULT_VAULT=
mkdir -p "$HOME" "$TMPDIR"
age-keygen -o "$work/key.txt" 2>/dev/null
"$bin" init "$work/v" >/dev/null
"$bin" --vault "$work/v" env create prod -r "$(age-keygen -y "$work/key.txt")" \
    --talos-version v1.6 >/dev/null
cd "$work/v"

export BENCH_BIN="$bin" BENCH_KEY="$work/key.txt" BENCH_TOOL="$TOOL" BENCH_RUNS="$RUNS"
export BENCH_ROUNDS="$ROUNDS" BENCH_WORK="$work" BENCH_SCALE="$SCALE"
python3 - <<'PY'
import json, os, resource, statistics, subprocess, time

bin_, key, tool = os.environ["BENCH_BIN"], os.environ["BENCH_KEY"], os.environ["BENCH_TOOL"]
runs, rounds = int(os.environ["BENCH_RUNS"]), int(os.environ["BENCH_ROUNDS"])
commands = {
    "export": f"{bin_} -i {key} bundle export prod",
    "age": f"age -d -i {key} envs/prod/bundle.age",
    "show": f"{bin_} env show prod",
}
names = list(commands)
times = {n: [] for n in names}
cpu = {n: [] for n in names}  # user + system seconds (hyperfine: mean per round)
argv = {n: c.split() for n, c in commands.items()}

def loop(which, runs, into, cpu_into=None):
    """Runs the commands round-robin (order rotated each iteration) after 3 warm-up rounds."""
    for i in range(runs + 3):
        for n in which[i % len(which):] + which[:i % len(which)]:
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(argv[n], check=True, stdout=subprocess.DEVNULL)
            t1 = time.perf_counter()
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            if i >= 3:
                into[n].append(t1 - t0)
                if cpu_into is not None:
                    cpu_into[n].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)

def events():
    out = subprocess.run([bin_, "env", "show", "prod", "-o", "json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)["audit_events"]

events_before = events()
if tool == "hyperfine":
    per_round = -(-runs // rounds)
    for r in range(rounds):
        order = names[r % 3:] + names[:r % 3]
        out = os.path.join(os.environ["BENCH_WORK"], f"round{r}.json")
        # -N: no intermediate shell; hyperfine sends output to /dev/null (not a terminal).
        run = subprocess.run(["hyperfine", "-N", "--style", "none", "--warmup", "3",
                        "--runs", str(per_round), "--export-json", out]
                       + [commands[n] for n in order], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, check=False)
        if run.returncode != 0:  # its warnings (outliers, caches) are noise; errors are not
            raise SystemExit(f"hyperfine failed:\n{run.stderr}")
        for res in json.load(open(out))["results"]:
            name = next(n for n in names if commands[n] == res["command"])
            times[name].extend(res["times"])
            cpu[name].append(res["user"] + res["system"])
else:
    loop(names, runs, times, cpu)

ms = lambda s: s * 1000
med = {n: statistics.median(times[n]) for n in names}
print(f"tool: {tool}; interleaved; {len(times['export'])} runs each; "
      f"audit events {events_before} -> {events()}")
print(f"{'command':<48} {'median':>9} {'min':>9} {'p90':>9} {'cpu':>9}")
labels = {"export": "talvault bundle export prod > /dev/null",
          "age": "age -d -i KEY envs/prod/bundle.age > /dev/null",
          "show": "talvault env show prod"}
for n in names:
    t = sorted(times[n])
    p90 = t[int(0.9 * (len(t) - 1))]
    c = statistics.median(cpu[n])
    print(f"{labels[n]:<48} {ms(med[n]):>7.2f}ms {ms(t[0]):>7.2f}ms {ms(p90):>7.2f}ms "
          f"{ms(c):>7.2f}ms")
ratio = med["export"] / med["age"]
print(f"ratio export/age: {ratio:.2f}")
print(f"targets: export median < 10 ms: {'met' if ms(med['export']) < 10 else 'MISSED'}; "
      f"export within 1.5x of age -d: {'met' if ratio <= 1.5 else 'MISSED'}")

# Every export reads the environment's audit events to find the heads: cost grows with them.
scale = int(os.environ["BENCH_SCALE"])
if scale > events():
    for _ in range(scale - events()):
        subprocess.run(argv["export"], check=True, stdout=subprocess.DEVNULL)
    grown = {"export": [], "age": []}
    loop(["export", "age"], 30, grown)
    e, a = statistics.median(grown["export"]), statistics.median(grown["age"])
    print(f"with {scale} audit events (python3 loop, 30 runs each): export median {ms(e):.2f}ms, "
          f"age -d {ms(a):.2f}ms, ratio {e / a:.2f}")
PY
