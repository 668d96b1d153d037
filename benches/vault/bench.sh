#!/usr/bin/env bash
# Benchmark of the vault's read path: `talvault bundle export` against `age -d` on the same
# bundle.age, plus `talvault env show` (no decryption). Prints medians and the export/age ratio.
# A benchmark, not a test: it never fails on slow numbers. See README.md beside it.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

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
export BENCH_LIB="$repo/benches"
python3 - <<'PY'
import json, os, statistics, subprocess, sys
sys.dont_write_bytecode = True  # no __pycache__ in the repository
sys.path.insert(0, os.environ["BENCH_LIB"])
import interleave

bin_, key, tool = os.environ["BENCH_BIN"], os.environ["BENCH_KEY"], os.environ["BENCH_TOOL"]
runs, rounds = int(os.environ["BENCH_RUNS"]), int(os.environ["BENCH_ROUNDS"])
commands = {
    "export": f"{bin_} -i {key} bundle export prod",
    "age": f"age -d -i {key} envs/prod/bundle.age",
    "show": f"{bin_} env show prod",
}
names = list(commands)
argv = {n: c.split() for n, c in commands.items()}

def events():
    out = subprocess.run([bin_, "env", "show", "prod", "-o", "json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)["audit_events"]

events_before = events()
times, cpu = interleave.measure(commands, runs, rounds, tool, os.environ["BENCH_WORK"])

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

# How the cost of an export grows with the environment's audit events (each export finds their
# heads, through the record cache).
scale = int(os.environ["BENCH_SCALE"])
if scale > events():
    for _ in range(scale - events()):
        subprocess.run(argv["export"], check=True, stdout=subprocess.DEVNULL)
    grown = {"export": [], "age": []}
    interleave.loop(argv, ["export", "age"], 30, grown)
    e, a = statistics.median(grown["export"]), statistics.median(grown["age"])
    print(f"with {scale} audit events (python3 loop, 30 runs each): export median {ms(e):.2f}ms, "
          f"age -d {ms(a):.2f}ms, ratio {e / a:.2f}")
PY
