#!/usr/bin/env bash
# Times `talvault bundle generate` against a Go stdlib program that generates the
# same keys as `talosctl gen secrets` (RSA-4096 + 3 ECDSA P-256 + Ed25519), run
# interleaved, and prints the medians and their ratio. It builds both, writes
# only under a temporary directory, and must not touch anything else.
#
# Usage: benches/rsa-keygen/compare.sh            (from anywhere in the repo)
#   RUNS=N            runs of each side (default 21, at least 15)
#   TALVAULT_CMD=...  the talvault side, a shell command run with `eval`; the
#                     scratch directory is "$tmp". Default:
#                     "$bin/talvault" bundle generate -o "$tmp/secrets.yaml" --force
#   CARGO_TARGET_DIR  honoured; $bin is "${CARGO_TARGET_DIR:-target}/release".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
runs="${RUNS:-21}"
if [ "$runs" -lt 15 ]; then
    echo "RUNS must be at least 15" >&2
    exit 2
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
bin="${CARGO_TARGET_DIR:-$repo/target}/release"
export tmp bin

echo "== building (cargo build --release; go build, stdlib only)"
(cd "$repo" && cargo build --release --quiet)
(cd "$here" && GOFLAGS= GOPROXY=off GOTOOLCHAIN=local go build -o "$tmp/go-gensecrets" .)

talvault_cmd="${TALVAULT_CMD:-\"\$bin/talvault\" bundle generate -o \"\$tmp/secrets.yaml\" --force}"
go_cmd='"$tmp/go-gensecrets" -o "$tmp/go-secrets.yaml"'

# "wall_ms cpu_ms" for one run of a command (eval'd), from bash's `time`:
# wall clock, and user + system CPU time of the process and its children.
time_ms() {
    local TIMEFORMAT='%3R %3U %3S' out
    out="$({ time eval "$1" >/dev/null; } 2>&1)"
    awk '{ printf "%.1f %.1f\n", $1 * 1000, ($2 + $3) * 1000 }' <<<"$out"
}

median() {
    sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "== $(go version); $(rustc --version)"
echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== talvault side: $talvault_cmd"
echo "== go side:       $go_cmd"

# One warm-up run each (page cache, first exec), not counted.
eval "$go_cmd"
eval "$talvault_cmd" >/dev/null

: >"$tmp/go.ms"
: >"$tmp/tv.ms"
echo "        wall ms (cpu ms)"
for i in $(seq 1 "$runs"); do
    # Alternate which side goes first.
    if [ $((i % 2)) -eq 1 ]; then
        g="$(time_ms "$go_cmd")"
        t="$(time_ms "$talvault_cmd")"
    else
        t="$(time_ms "$talvault_cmd")"
        g="$(time_ms "$go_cmd")"
    fi
    echo "$g" >>"$tmp/go.ms"
    echo "$t" >>"$tmp/tv.ms"
    printf 'run %2d: go %8.1f (%7.1f)   talvault %8.1f (%7.1f)\n' "$i" $g $t
done
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# summary FILE COLUMN: "median (min, max)" of one column.
summary() {
    local med min max
    med="$(cut -d' ' -f"$2" "$1" | median)"
    min="$(cut -d' ' -f"$2" "$1" | sort -n | head -1)"
    max="$(cut -d' ' -f"$2" "$1" | sort -n | tail -1)"
    echo "$med ms (min $min, max $max)"
}
echo "go       wall median $(summary "$tmp/go.ms" 1), cpu median $(summary "$tmp/go.ms" 2)"
echo "talvault wall median $(summary "$tmp/tv.ms" 1), cpu median $(summary "$tmp/tv.ms" 2)"
echo "runs: $runs each"
go_med="$(cut -d' ' -f1 "$tmp/go.ms" | median)"
tv_med="$(cut -d' ' -f1 "$tmp/tv.ms" | median)"
awk -v t="$tv_med" -v g="$go_med" 'BEGIN { printf "ratio of wall medians talvault/go = %.3f\n", t / g }'
