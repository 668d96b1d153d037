#!/usr/bin/env bash
# Compares `talvault kubeconfig` as a whole process (age X25519 identity, bundle opened, P-256
# leaf signed by the Kubernetes CA, record and audit event written with fsync, kubeconfig written)
# against an openssl pipeline doing the same job: openssl genpkey + req + x509 -req under
# certs.k8s, then base64 into a kubeconfig YAML. Mirrors benches/issue/compare.sh.
# Runs both interleaved RUNS times (default 31) and prints medians and the ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-31}
cargo build --release --locked -q
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/talvault
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
age-keygen -o id.key 2>/dev/null
export TALVAULT_IDENTITY=$work/id.key TALVAULT_ACTOR=bench
"$bin" init v >/dev/null
"$bin" --vault v env create prod -r "$(age-keygen -y id.key)" --talos-version v1.13 --endpoint 10.0.0.1 >/dev/null
# The Kubernetes CA for the openssl side (SEC1 `EC PRIVATE KEY`, which openssl reads as is).
"$bin" --vault v bundle export prod > secrets.yaml
python3 - <<'PY'
import base64, re
text = open("secrets.yaml").read()
k8s_block = text.split("    k8s:\n", 1)[1]
crt = re.search(r"crt: (\S+)", k8s_block).group(1)
key = re.search(r"key: (\S+)", k8s_block).group(1)
open("ca.crt", "wb").write(base64.b64decode(crt))
open("ca.key", "wb").write(base64.b64decode(key))
PY
rm secrets.yaml
printf 'keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nauthorityKeyIdentifier=keyid\n' > ext.cnf
cat > openssl-kubeconfig.sh <<'SH'
#!/usr/bin/env bash
set -euo pipefail
d=$(mktemp -d)
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/k.pem" 2>/dev/null
openssl req -new -key "$d/k.pem" -subj "/O=talvault:viewers/CN=alice" -out "$d/r.csr"
openssl x509 -req -in "$d/r.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3 -extfile ext.cnf -out "$d/c.pem" 2>/dev/null
{
  echo "apiVersion: v1"
  echo "clusters:"
  echo "- cluster:"
  echo "    certificate-authority-data: $(base64 -w0 ca.crt)"
  echo "    server: https://10.0.0.1:6443"
  echo "  name: prod"
  echo "contexts:"
  echo "- context:"
  echo "    cluster: prod"
  echo "    namespace: default"
  echo "    user: alice@prod"
  echo "  name: alice@prod"
  echo "current-context: alice@prod"
  echo "kind: Config"
  echo "users:"
  echo "- name: alice@prod"
  echo "  user:"
  echo "    client-certificate-data: $(base64 -w0 "$d/c.pem")"
  echo "    client-key-data: $(base64 -w0 "$d/k.pem")"
} > "$d/kubeconfig"
rm -rf "$d"
SH
chmod +x openssl-kubeconfig.sh
python3 - "$bin" "$RUNS" <<'PY'
import statistics, subprocess, sys, time
bin, runs = sys.argv[1], int(sys.argv[2])
def timed(cmd):
    t = time.perf_counter(); subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL); return time.perf_counter() - t
tv, ossl = [], []
for i in range(runs):
    tv.append(timed([bin, "--vault", "v", "kubeconfig", "prod", "--user", "alice", "--group", "talvault:viewers", "-o", f"kc{i}"]))
    ossl.append(timed(["./openssl-kubeconfig.sh"]))
a, b = statistics.median(tv), statistics.median(ossl)
print(f"runs: {runs} each, interleaved")
print(f"talvault kubeconfig (process): median {a*1000:7.2f} ms")
print(f"openssl pipeline:              median {b*1000:7.2f} ms")
print(f"ratio talvault/openssl:        {a/b:.3f}  (target <= 0.25)")
PY
