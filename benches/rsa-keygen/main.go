// Command gensecrets-bench generates, with the Go standard library only, the keys
// that `talosctl gen secrets` generates for the current contract, so that
// compare.sh can time it against `talvault bundle generate`. It is a benchmark
// stand-in, not a secrets generator: the output is not the Talos format.
//
// What it does, like talosctl's secrets bundle:
//   - RSA-4096 service-account key: rsa.GenerateKey, x509.MarshalPKCS1PrivateKey;
//   - ECDSA P-256 keys for the etcd, Kubernetes and aggregator CAs:
//     x509.MarshalECPrivateKey, each with a self-signed CA certificate;
//   - Ed25519 key for the Talos API (OS) CA: x509.MarshalPKCS8PrivateKey, with a
//     self-signed CA certificate;
//   - random cluster id/secret, bootstrap token, secretbox key and trustd token.
//
// Everything is PEM/base64-encoded and written to the -o file (mode 0600).
package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"time"
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	must(err)
	return b
}

// selfSignedCA returns a PEM CA certificate for the key, valid for 10 years.
func selfSignedCA(name string, priv crypto.Signer) []byte {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	must(err)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{name}},
		NotBefore:             now,
		NotAfter:              now.Add(87600 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	must(err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func main() {
	out := flag.String("o", "secrets.yaml", "output file")
	flag.Parse()

	var buf bytes.Buffer
	b64 := base64.StdEncoding.EncodeToString

	fmt.Fprintf(&buf, "cluster:\n  id: %s\n  secret: %s\n", b64(randomBytes(32)), b64(randomBytes(32)))
	fmt.Fprintf(&buf, "secrets:\n  bootstraptoken: %s.%s\n  secretboxencryptionsecret: %s\n",
		hex.EncodeToString(randomBytes(3)), hex.EncodeToString(randomBytes(8)), b64(randomBytes(32)))
	fmt.Fprintf(&buf, "trustdinfo:\n  token: %s.%s\n", hex.EncodeToString(randomBytes(3)), hex.EncodeToString(randomBytes(8)))

	fmt.Fprintf(&buf, "certs:\n")
	for _, name := range []string{"etcd", "k8s", "k8saggregator"} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		der, err := x509.MarshalECPrivateKey(key)
		must(err)
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
		fmt.Fprintf(&buf, "  %s:\n    crt: %s\n    key: %s\n", name, b64(selfSignedCA(name, key)), b64(keyPEM))
	}

	// Service-account key: the RSA-4096 key this benchmark is about.
	saKey, err := rsa.GenerateKey(rand.Reader, 4096)
	must(err)
	saPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)})
	fmt.Fprintf(&buf, "  k8sserviceaccount:\n    key: %s\n", b64(saPEM))

	_, osKey, err := ed25519.GenerateKey(rand.Reader)
	must(err)
	osDER, err := x509.MarshalPKCS8PrivateKey(osKey)
	must(err)
	osPEM := pem.EncodeToMemory(&pem.Block{Type: "ED25519 PRIVATE KEY", Bytes: osDER})
	fmt.Fprintf(&buf, "  os:\n    crt: %s\n    key: %s\n", b64(selfSignedCA("talos", osKey)), b64(osPEM))

	must(os.WriteFile(*out, buf.Bytes(), 0o600))
}
