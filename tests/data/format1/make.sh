#!/usr/bin/env bash
# Regenerates tests/data/format1/: a vault made by the last format-1 release of talvault
# (commit a8c4181, the parent of the audit chain format 2), with the test identity that opens
# it. tests/it/integrity.rs upgrades a copy of it. Needs git, cargo and age-keygen.
#
# Usage: tests/data/format1/make.sh   (from anywhere; rewrites vault/ and identity.key)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)
rev=a8c4181
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$repo" archive "$rev" | tar -x -C "$work/"
mkdir -p "$work/out"
(cd "$work" && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$work/target} cargo build --locked -q --bin talvault)
bin=${CARGO_TARGET_DIR:-$work/target}/debug/talvault
cd "$work/out"
age-keygen -o identity.key 2>/dev/null
export TALVAULT_IDENTITY=$PWD/identity.key TALVAULT_ACTOR=format1 TZ=UTC
r=$(age-keygen -y identity.key)
tv() { "$bin" --vault vault "$@"; }
"$bin" init vault >/dev/null
tv env create prod -r "$r" --talos-version v1.11 --endpoint 10.0.0.1 >/dev/null
tv env create stage -r "$r" --talos-version v1.11 --endpoint 10.0.0.2 >/dev/null
# A direct certificate, an issuer with a certificate and a revocation (format 1 stores the
# CRL), a break-glass taint and its untaint, and an export.
tv issue prod --role os:reader --holder alice -o alice.talosconfig >/dev/null
tv issuer create prod >/dev/null
issuer=$(ls vault/envs/prod/issuers)
tv issuer activate prod "$issuer" --force >/dev/null
tv issue prod --role os:operator --holder bob -o bob.talosconfig >/dev/null
bob=$(basename "$(grep -l 'holder: bob' vault/envs/prod/certs/*.yaml)" .yaml)
tv revoke prod "$bob" --reason keyCompromise >/dev/null
tv break-glass prod --reason INC-1 -o bg.talosconfig >/dev/null
tv env untaint prod --reason "INC-1 closed" >/dev/null
tv bundle export stage >/dev/null
rm -rf vault/.cache vault/.lock
rm -rf "$here/vault"
cp -r vault "$here/vault"
cp identity.key "$here/identity.key"
echo "tests/data/format1: vault made by talvault $rev; issuer $issuer, bob's certificate $bob revoked"
