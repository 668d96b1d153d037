#!/usr/bin/env bash
# Sealed backups against the Go age CLI on the same file, in the same run: `talvault backup
# seal` vs `age -r`, `talvault backup open` vs `age -d` (both streaming to /dev/null,
# interleaved, medians and throughput ratios; target >= 0.80), `backup verify` for reference,
# then each once more to a real file under /usr/bin/time -v for wall time with fsync and peak
# RSS (target < 64 MiB at any size; shown at two sizes). A benchmark, not a test: it never fails
# on slow numbers. See README.md beside it.
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZE=${SIZE:-1G}          # input size (head -c syntax); the RSS check adds a 64 MiB input
RUNS=${RUNS:-10}          # runs per command (interleaved)
ROUNDS=${ROUNDS:-5}       # hyperfine rounds, command order rotated each round
TOOL=${TOOL:-auto}        # auto | hyperfine | python
WORK=${WORK:-}            # where the inputs go (default: a temporary directory); needs ~4x SIZE

for t in age age-keygen python3; do
    command -v "$t" >/dev/null || { echo "bench: $t is required (apt-get install age python3)" >&2; exit 2; }
done
[[ -x /usr/bin/time ]] || { echo "bench: /usr/bin/time is required (apt-get install time)" >&2; exit 2; }
if [[ $TOOL == auto ]]; then
    if command -v hyperfine >/dev/null; then TOOL=hyperfine; else TOOL=python; fi
fi

cargo build --release --locked --bin talvault >&2
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release/talvault"
repo=$PWD

if [[ -n $WORK ]]; then
    mkdir -p "$WORK"
    work=$(mktemp -d "$WORK/talvault-backup-bench.XXXXXX")
else
    work=$(mktemp -d)
fi
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" TMPDIR="$work/tmp" TALVAULT_ACTOR=bench
export TALVAULT_IDENTITY="$work/key.txt" SOPS_AGE_KEY_FILE= TALVAULT_VAULT="$work/v"
mkdir -p "$HOME" "$TMPDIR"
age-keygen -o "$work/key.txt" 2>/dev/null
recipient=$(age-keygen -y "$work/key.txt")
"$bin" init "$work/v" >/dev/null
"$bin" env create prod -r "$recipient" --endpoint 10.0.0.1 >/dev/null
head -c "$SIZE" /dev/urandom >"$work/input"
head -c 64M /dev/urandom >"$work/input-64m"
"$bin" backup seal prod "$work/input" -o "$work/sealed.age" >/dev/null
age -r "$recipient" -o "$work/go.age" "$work/input"
bytes=$(stat -c %s "$work/input")

export BENCH_BIN="$bin" BENCH_TOOL="$TOOL" BENCH_RUNS="$RUNS" BENCH_ROUNDS="$ROUNDS"
export BENCH_WORK="$work" BENCH_LIB="$repo/benches" BENCH_RECIPIENT="$recipient"
export BENCH_BYTES="$bytes"
echo "input: $bytes bytes; $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - <<'PY'
import os, statistics, sys
sys.dont_write_bytecode = True  # no __pycache__ in the repository
sys.path.insert(0, os.environ["BENCH_LIB"])
import interleave

b, w, r = os.environ["BENCH_BIN"], os.environ["BENCH_WORK"], os.environ["BENCH_RECIPIENT"]
key = f"{w}/key.txt"
# Everything streams to stdout, which both tools send to /dev/null here (not a terminal).
commands = {
    "seal": f"{b} backup seal prod {w}/input -o -",
    "age -r": f"age -r {r} {w}/input",
    "open": f"{b} -i {key} backup open prod {w}/sealed.age -o -",
    "age -d": f"age -d -i {key} {w}/go.age",
    "verify": f"{b} -i {key} backup verify prod {w}/sealed.age",
}
runs, rounds = int(os.environ["BENCH_RUNS"]), int(os.environ["BENCH_ROUNDS"])
times, cpu = interleave.measure(commands, runs, rounds, os.environ["BENCH_TOOL"], w)
mib = int(os.environ["BENCH_BYTES"]) / (1 << 20)
med = {n: statistics.median(times[n]) for n in commands}
print(f"tool: {os.environ['BENCH_TOOL']}; interleaved; {len(times['seal'])} runs each")
print(f"{'command (to /dev/null)':<26} {'median':>8} {'min':>8} {'max':>8} {'MiB/s':>8} {'cpu':>8}")
for n in commands:
    t = sorted(times[n])
    print(f"{n:<26} {med[n]:>7.2f}s {t[0]:>7.2f}s {t[-1]:>7.2f}s {mib / med[n]:>8.0f} "
          f"{statistics.median(cpu[n]):>7.2f}s")
for ours, theirs in (("seal", "age -r"), ("open", "age -d")):
    ratio = med[theirs] / med[ours]
    c = statistics.median(cpu[theirs]) / statistics.median(cpu[ours])
    print(f"throughput talvault {ours} / {theirs}: {ratio:.2f} wall (target >= 0.80: "
          f"{'met' if ratio >= 0.8 else 'MISSED'}), {c:.2f} CPU")
PY

# To real files (fsync before the rename, as shipped), once each, with peak RSS.
rss() { # label, command…: wall seconds and maximum resident set size
    /usr/bin/time -f '%e %M' -o "$work/time.txt" "${@:2}" >/dev/null 2>&1
    local out
    out=$(tail -1 "$work/time.txt")
    printf '%-40s %7ss %8s KiB\n' "$1" "${out% *}" "${out#* }"
}
echo "to files, one run each:                  wall     peak RSS"
for input in input input-64m; do
    n=$(stat -c %s "$work/$input")
    rm -f "$work/out.age" "$work/out" "$work/go-out.age" "$work/go-out"
    rss "seal $n B -> file" "$bin" backup seal prod "$work/$input" -o "$work/out.age"
    rss "age -r $n B -> file" age -r "$recipient" -o "$work/go-out.age" "$work/$input"
    rss "open $n B -> file" "$bin" -i "$work/key.txt" backup open prod "$work/out.age" -o "$work/out"
    rss "age -d $n B -> file" age -d -i "$work/key.txt" -o "$work/go-out" "$work/go-out.age"
    rss "verify $n B" "$bin" -i "$work/key.txt" backup verify prod "$work/out.age"
    cmp -s "$work/out" "$work/$input" || { echo "bench: open did not give the input back" >&2; exit 1; }
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
