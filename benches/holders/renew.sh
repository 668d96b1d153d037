#!/usr/bin/env bash
# Benchmark of `talvault renew --all` for many holders (default 1,000): registers HOLDERS holders
# (each with its own age recipient and a standing os:reader grant; one `holder add` process
# each, so the trail holds HOLDERS events), then times, RUNS times on a fresh copy of that vault,
# the renewal that issues a certificate to every one of them: one vault open, one lock, one
# opening of the signing key, HOLDERS certificates signed and sealed, one commit of HOLDERS
# records and HOLDERS audit events, HOLDERS sealed files in the outbox. Then times the second
# run, which finds nothing due. Prints medians. A benchmark, not a test: it never fails on slow
# numbers (the target is < 5 s for 1,000 holders, release build).
set -euo pipefail
cd "$(dirname "$0")/../.."
HOLDERS=${HOLDERS:-1000}
RUNS=${RUNS:-5}
for t in age-keygen python3; do
    command -v "$t" >/dev/null || { echo "bench: $t is required" >&2; exit 2; }
done
cargo build --release --locked -q --bin talvault
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release/talvault"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" TMPDIR="$work/tmp" TALVAULT_ACTOR=bench
export TALVAULT_IDENTITY="$work/op.key" SOPS_AGE_KEY_FILE= TALVAULT_VAULT=
mkdir -p "$HOME" "$TMPDIR"
cd "$work"
age-keygen -o op.key 2>/dev/null
"$bin" init base >/dev/null
"$bin" --vault base env create prod -r "$(age-keygen -y op.key)" --talos-version v1.11 \
    --endpoint 10.0.0.1 >/dev/null
echo "registering $HOLDERS holders…" >&2
started=$(date +%s)
for i in $(seq -w 1 "$HOLDERS"); do
    r=$(age-keygen 2>/dev/null | sed -n 's/^# public key: //p')
    "$bin" --vault base holder add prod "h$i" -r "$r" --role os:reader >/dev/null
done
echo "registered in $(( $(date +%s) - started )) s" >&2
# Warm the record caches as any earlier command would have.
"$bin" --vault base status >/dev/null || true

python3 - "$bin" "$RUNS" "$HOLDERS" <<'PY'
import os, shutil, statistics, subprocess, sys, time
bin_, runs, holders = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def timed(args):
    t = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t
first, second = [], []
for i in range(runs):
    shutil.rmtree("v", ignore_errors=True); shutil.rmtree("outbox", ignore_errors=True)
    shutil.copytree("base", "v", symlinks=True); os.mkdir("outbox")
    subprocess.run(["sync"], check=True)
    first.append(timed([bin_, "--vault", "v", "renew", "prod", "--all", "-o", "outbox"]))
    n = len(os.listdir("outbox"))
    assert n == holders, f"{n} sealed files, expected {holders}"
    second.append(timed([bin_, "--vault", "v", "renew", "prod", "--all", "-o", "outbox"]))
print(f"holders: {holders}, runs: {runs}")
print(f"renew --all, every holder due: median {statistics.median(first):6.3f} s  (min {min(first):.3f}, max {max(first):.3f}; target < 5 s)")
print(f"renew --all, nothing due:      median {statistics.median(second):6.3f} s")
PY
