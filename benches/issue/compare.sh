#!/usr/bin/env bash
# Compares `talvault issue` as a whole process (age X25519 identity, bundle opened, leaf signed,
# record and audit event written with fsync) against an openssl pipeline doing the same job:
# openssl genpkey + req + x509 -req, then base64 into a talosconfig YAML.
# Runs both interleaved RUNS times (default 31) and prints medians and the ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-31}
cargo build --release --locked -q
bin=$PWD/target/release/talvault
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
age-keygen -o id.key 2>/dev/null
export TALVAULT_IDENTITY=$work/id.key TALVAULT_ACTOR=bench
"$bin" init v >/dev/null
"$bin" --vault v env create prod -r "$(age-keygen -y id.key)" --talos-version v1.6 --endpoint 10.0.0.1 >/dev/null
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
cat > openssl-issue.sh <<'SH'
#!/usr/bin/env bash
set -euo pipefail
d=$(mktemp -d)
openssl genpkey -algorithm ed25519 -out "$d/k.pem" 2>/dev/null
openssl req -new -key "$d/k.pem" -subj "/O=os:reader/CN=alice" -out "$d/r.csr"
openssl x509 -req -in "$d/r.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -extfile ext.cnf -out "$d/c.pem" 2>/dev/null
{
  echo "context: reader@prod"
  echo "contexts:"
  echo "    reader@prod:"
  echo "        endpoints:"
  echo "            - 10.0.0.1"
  echo "        ca: $(base64 -w0 ca.crt)"
  echo "        crt: $(base64 -w0 "$d/c.pem")"
  echo "        key: $(base64 -w0 "$d/k.pem")"
} > "$d/talosconfig"
rm -rf "$d"
SH
chmod +x openssl-issue.sh
python3 - "$bin" "$RUNS" <<'PY'
import os, statistics, subprocess, sys, time
bin, runs = sys.argv[1], int(sys.argv[2])
def timed(cmd):
    t = time.perf_counter(); subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL); return time.perf_counter() - t
tv, ossl = [], []
for i in range(runs):
    tv.append(timed([bin, "--vault", "v", "issue", "prod", "--role", "os:reader", "--holder", "alice", "-o", f"tc{i}"]))
    ossl.append(timed(["./openssl-issue.sh"]))
a, b = statistics.median(tv), statistics.median(ossl)
print(f"runs: {runs} each, interleaved")
print(f"talvault issue (process):  median {a*1000:7.2f} ms")
print(f"openssl pipeline:          median {b*1000:7.2f} ms")
print(f"ratio talvault/openssl:    {a/b:.3f}  (target <= 0.25)")
PY
