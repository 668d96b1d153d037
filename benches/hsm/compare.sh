#!/usr/bin/env bash
# What a PKCS#11 issuer costs a `talvault issue` process: the same command against an environment
# whose issuer key is sealed in the vault (age) and one whose key is in a SoftHSM2 token, for
# Ed25519 and ECDSA P-256, interleaved, with medians and the SoftHSM/in-memory ratio (target
# <= 2x). Also times `talvault hsm check` on the token key (module load, C_Initialize, token,
# session, C_Login, key attributes: the per-process cost of opening the module), and prints the
# per-process open of `cargo bench -p talvault-hsm --bench sign` (SIGN_BENCH=0 skips it).
# A benchmark, not a test: it never fails on slow numbers. See README.md beside it.
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-40}          # runs per command (at least 30)
ROUNDS=${ROUNDS:-4}       # hyperfine rounds, command order rotated each round
TOOL=${TOOL:-auto}        # auto | hyperfine | python
P256=${P256:-1}           # also the ECDSA P-256 pair (0: Ed25519 only)
SIGN_BENCH=${SIGN_BENCH:-1}

for t in age-keygen python3 softhsm2-util; do
    command -v "$t" >/dev/null || { echo "bench: $t is required (apt-get install age python3 softhsm2)" >&2; exit 2; }
done
module=
while IFS= read -r candidate; do
    if [[ -e $candidate ]]; then module=$candidate; break; fi
done < <(grep -o '"/[^"]*"' hsm/tests/common/softhsm_modules.rs | tr -d '"')
[[ -n $module ]] || { echo "bench: the SoftHSM2 module is not installed (apt-get install softhsm2)" >&2; exit 2; }
if [[ $TOOL == auto ]]; then
    if command -v hyperfine >/dev/null; then TOOL=hyperfine; else TOOL=python; fi
fi

cargo build --release --locked --bin talvault >&2
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release/talvault"
repo=$PWD
real_home=$HOME

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A private HOME, TMPDIR and SoftHSM configuration, and nothing inherited from the caller's shell.
export HOME="$work/home" TMPDIR="$work/tmp" TALVAULT_ACTOR=bench
export TALVAULT_IDENTITY="$work/key.txt" SOPS_AGE_KEY_FILE= TALVAULT_VAULT=
unset TALVAULT_PKCS11_PIN
mkdir -p "$HOME" "$TMPDIR" "$work/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' \
    "$work/tokens" > "$work/softhsm2.conf"
export SOFTHSM2_CONF="$work/softhsm2.conf"
softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 5678 >/dev/null
printf '1234\n' > "$work/pin"
age-keygen -o "$work/key.txt" 2>/dev/null
recipient=$(age-keygen -y "$work/key.txt")
"$bin" init "$work/v" >/dev/null
cd "$work/v"

algorithms=(ed25519)
[[ $P256 == 1 ]] && algorithms+=(ecdsa-p256)
for alg in "${algorithms[@]}"; do
    for store in mem hsm; do
        env="$store-$alg"
        "$bin" env create "$env" -r "$recipient" --talos-version v1.6 --endpoint 10.0.0.1 >/dev/null
        if [[ $store == mem ]]; then
            out=$("$bin" issuer create "$env" --algorithm "$alg")
        else
            out=$("$bin" issuer create "$env" --algorithm "$alg" --generate \
                --pkcs11 "pkcs11:token=bench;object=$env?module-path=$module&pin-source=$work/pin")
        fi
        id=$(sed -n '1s/^created issuer \([^ ]*\) .*/\1/p' <<<"$out")
        "$bin" issuer activate "$env" "$id" --force >/dev/null
    done
done

export BENCH_BIN="$bin" BENCH_PIN="$work/pin" BENCH_TOOL="$TOOL" BENCH_RUNS="$RUNS"
export BENCH_ROUNDS="$ROUNDS" BENCH_WORK="$work" BENCH_ALGS="${algorithms[*]}"
export BENCH_LIB="$repo/benches"
export BENCH_CHECK_URI="pkcs11:token=bench;object=hsm-ed25519?module-path=$module&pin-source=$work/pin"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - <<'PY'
import os, shlex, statistics, sys
sys.dont_write_bytecode = True  # no __pycache__ in the repository
sys.path.insert(0, os.environ["BENCH_LIB"])
import interleave

bin_, pin, tool = os.environ["BENCH_BIN"], os.environ["BENCH_PIN"], os.environ["BENCH_TOOL"]
runs, rounds = int(os.environ["BENCH_RUNS"]), int(os.environ["BENCH_ROUNDS"])
algs = os.environ["BENCH_ALGS"].split()
# The same argv for both stores: --pin-file is read only when a token asks for a PIN.
commands = {}
for alg in algs:
    for store in ("mem", "hsm"):
        commands[f"{store}-{alg}"] = (
            f"{bin_} --pin-file {pin} issue {store}-{alg} --role os:reader -o -")
commands["check"] = f"{bin_} hsm check {shlex.quote(os.environ['BENCH_CHECK_URI'])}"
commands["version"] = f"{bin_} --version"
names = list(commands)
times, cpu = interleave.measure(commands, runs, rounds, tool, os.environ["BENCH_WORK"])

ms = lambda s: s * 1000
med = {n: statistics.median(times[n]) for n in names}
labels = {n: f"talvault issue {n} --role os:reader -o -" for n in names
          if n not in ("check", "version")}
labels["check"] = "talvault hsm check URI (token key, logged in)"
labels["version"] = "talvault --version (process start only)"
print(f"tool: {tool}; interleaved; {len(times[names[0]])} runs each")
print(f"{'command':<48} {'median':>9} {'min':>9} {'p90':>9} {'cpu':>9}")
for n in names:
    t = sorted(times[n])
    p90 = t[int(0.9 * (len(t) - 1))]
    print(f"{labels[n]:<48} {ms(med[n]):>7.2f}ms {ms(t[0]):>7.2f}ms {ms(p90):>7.2f}ms "
          f"{ms(statistics.median(cpu[n])):>7.2f}ms")
for alg in algs:
    ratio = med[f"hsm-{alg}"] / med[f"mem-{alg}"]
    # Wall time includes waiting for fsync (each issue writes a record and an audit event):
    # on a busy disk that wait swamps both and pulls the ratio towards 1; CPU time does not.
    c = statistics.median(cpu[f"hsm-{alg}"]) / statistics.median(cpu[f"mem-{alg}"])
    print(f"ratio SoftHSM/in-memory, {alg}: {ratio:.2f} wall (target <= 2: "
          f"{'met' if ratio <= 2 else 'MISSED'}), {c:.2f} CPU; difference "
          f"{ms(med[f'hsm-{alg}'] - med[f'mem-{alg}']):.2f} ms")
print(f"opening the module per process (hsm check - --version): "
      f"{ms(med['check'] - med['version']):.2f} ms")
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ $SIGN_BENCH == 1 ]]; then
    cd "$repo"
    echo "cargo bench -p talvault-hsm --bench sign:"
    # It makes its own token and SOFTHSM2_CONF; cargo and rustup need the real HOME.
    env -u SOFTHSM2_CONF -u TMPDIR HOME="$real_home" \
        cargo bench --locked -p talvault-hsm --bench sign 2>/dev/null
fi
