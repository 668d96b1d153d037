#!/usr/bin/env bash
# Compares `talvault issue --holder alice --seal` as a whole process (age X25519 identity,
# bundle opened, leaf signed, talosconfig sealed to the holder's age recipient, record and
# audit event committed) against the pipeline someone would otherwise run: openssl genpkey +
# req + x509 -req, base64 into a talosconfig YAML, then `age -e -r RECIPIENT` (the Go age CLI).
# Runs both interleaved RUNS times (default 31) and prints medians and the ratio (target
# <= 0.25). A benchmark, not a test: it never fails on slow numbers. Sibling of compare.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-31}
for t in age age-keygen openssl python3; do
    command -v "$t" >/dev/null || { echo "bench: $t is required" >&2; exit 2; }
done
cargo build --release --locked -q --bin talvault
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release/talvault"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export HOME="$work" TALVAULT_ACTOR=bench SOPS_AGE_KEY_FILE= TALVAULT_VAULT=
age-keygen -o id.key 2>/dev/null
age-keygen -o alice.key 2>/dev/null
alice=$(age-keygen -y alice.key)
export TALVAULT_IDENTITY=$work/id.key
"$bin" init v >/dev/null
"$bin" --vault v env create prod -r "$(age-keygen -y id.key)" --talos-version v1.6 --endpoint 10.0.0.1 >/dev/null
"$bin" --vault v holder add prod alice -r "$alice" --role os:reader >/dev/null
# The OS CA for the openssl side (openssl needs the standard PKCS#8 label).
"$bin" --vault v bundle export prod > secrets.yaml
python3 - <<'PY'
import base64, re
text = open("secrets.yaml").read()
os_block = text.split("    os:\n", 1)[1]
crt = re.search(r"crt: (\S+)", os_block).group(1)
key = re.search(r"key: (\S+)", os_block).group(1)
open("ca.crt", "wb").write(base64.b64decode(crt))
open("ca.key", "wb").write(base64.b64decode(key).replace(b"ED25519 PRIVATE KEY", b"PRIVATE KEY"))
PY
rm secrets.yaml
printf 'keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nauthorityKeyIdentifier=keyid\n' > ext.cnf
cat > openssl-issue-seal.sh <<SH
#!/usr/bin/env bash
set -euo pipefail
d=\$(mktemp -d)
openssl genpkey -algorithm ed25519 -out "\$d/k.pem" 2>/dev/null
openssl req -new -key "\$d/k.pem" -subj "/O=os:reader/CN=alice" -out "\$d/r.csr"
openssl x509 -req -in "\$d/r.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -extfile ext.cnf -out "\$d/c.pem" 2>/dev/null
{
  echo "context: reader@prod"
  echo "contexts:"
  echo "    reader@prod:"
  echo "        endpoints:"
  echo "            - 10.0.0.1"
  echo "        ca: \$(base64 -w0 ca.crt)"
  echo "        crt: \$(base64 -w0 "\$d/c.pem")"
  echo "        key: \$(base64 -w0 "\$d/k.pem")"
} | age -e -r $alice -o "\$1"
rm -rf "\$d"
SH
chmod +x openssl-issue-seal.sh
python3 - "$bin" "$RUNS" <<'PY'
import statistics, subprocess, sys, time
bin_, runs = sys.argv[1], int(sys.argv[2])
def timed(cmd):
    t = time.perf_counter(); subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL); return time.perf_counter() - t
tv, ossl = [], []
for i in range(runs):
    tv.append(timed([bin_, "--vault", "v", "issue", "prod", "--holder", "alice", "--seal", "-o", f"tv{i}.age"]))
    ossl.append(timed(["./openssl-issue-seal.sh", f"os{i}.age"]))
# Both results open with alice's identity.
for f in ("tv0.age", "os0.age"):
    subprocess.run(["age", "-d", "-i", "alice.key", "-o", "/dev/null", f], check=True)
a, b = statistics.median(tv), statistics.median(ossl)
print(f"runs: {runs} each, interleaved")
print(f"talvault issue --seal (process):  median {a*1000:7.2f} ms")
print(f"openssl pipeline + age -e:        median {b*1000:7.2f} ms")
print(f"ratio talvault/pipeline:          {a/b:.3f}  (target <= 0.25)")
PY
