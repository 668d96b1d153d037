// kube-apiserver-check: a TLS handshake with a client certificate, authenticated the way the
// kube-apiserver's x509 authenticator authenticates it.
//
// Test helper for talvault (tests/it/kubernetes.rs); Go standard library only, no modules. It
// mirrors, for one request:
//   - the client-CA bundle Talos writes for the kube-apiserver: the -ca files joined with no
//     separator (siderolabs/talos internal/app/machined/pkg/controllers/k8s/
//     render_secrets_static_pod.go), every CERTIFICATE block of it parsed, one bad block failing
//     the whole bundle (k8s.io/client-go util/cert/pem.go ParseCertsPEM);
//   - the server: tls.RequestClientCert, so nothing is verified during the handshake
//     (k8s.io/apiserver pkg/server/secure_serving.go), the bundle advertised as acceptable CAs;
//   - the client: client-go sends its certificate whatever CAs the server lists
//     (k8s.io/client-go transport/transport.go GetClientCertificate), loaded with
//     tls.X509KeyPair;
//   - the authenticator (k8s.io/apiserver pkg/authentication/request/x509/x509.go
//     AuthenticateRequest and CommonNameUserConversion): PeerCertificates[0].Verify with Roots =
//     the bundle, Intermediates = the other peer certificates, KeyUsages = [ClientAuth], the
//     current time; then user = Subject.CommonName (an empty CN is not authenticated) and
//     groups = Subject.Organization.
//
// It prints one JSON object: authenticated, user, groups, and the error when not authenticated.
// The server's clock is -now (RFC 3339) when given, as in tests/go/apid-check: Go reads the real
// clock directly, so a test run under libfaketime passes the time it sees.
//
// Usage: kube-apiserver-check -ca k8s-ca.pem [-ca issuer.pem]… -client-cert crt.pem
//        -client-key key.pem [-now T]
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }

type result struct {
	Authenticated bool     `json:"authenticated"`
	User          string   `json:"user"`
	Groups        []string `json:"groups"`
	Error         string   `json:"error,omitempty"`
	BundleError   string   `json:"bundle_error,omitempty"`
}

// parseCertsPEM follows client-go util/cert/pem.go ParseCertsPEM: every CERTIFICATE block must
// parse, other blocks are skipped, and at least one certificate must be found.
func parseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for len(data) > 0 {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" || len(block.Headers) != 0 {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return certs, err
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("data does not contain any valid RSA or ECDSA certificates")
	}
	return certs, nil
}

// authenticate follows the apiserver's x509 Authenticator with CommonNameUserConversion.
func authenticate(roots *x509.CertPool, peers []*x509.Certificate, now time.Time) result {
	if len(peers) == 0 {
		return result{Groups: []string{}, Error: "no client certificate"}
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CurrentTime:   now,
	}
	for _, c := range peers[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := peers[0].Verify(opts); err != nil {
		return result{Groups: []string{}, Error: "verifying certificate: " + err.Error()}
	}
	if len(peers[0].Subject.CommonName) == 0 {
		return result{Groups: []string{}, Error: "common name of the provided certificate is empty"}
	}
	groups := peers[0].Subject.Organization
	if groups == nil {
		groups = []string{}
	}
	return result{Authenticated: true, User: peers[0].Subject.CommonName, Groups: groups}
}

func serverCertificate(now time.Time) (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kube-apiserver-check"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(parsed)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: parsed}, pool, nil
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kube-apiserver-check: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	var cas fileList
	flag.Var(&cas, "ca", "PEM file of a CA in the client-CA bundle (repeatable; joined as Talos joins them)")
	certFile := flag.String("client-cert", "", "client certificate PEM (client-certificate-data, decoded)")
	keyFile := flag.String("client-key", "", "client key PEM (client-key-data, decoded)")
	nowFlag := flag.String("now", "", "the API server's clock, RFC 3339 (default: the real clock)")
	flag.Parse()
	now := time.Now()
	if *nowFlag != "" {
		parsed, err := time.Parse(time.RFC3339, *nowFlag)
		if err != nil {
			fail("-now: %v", err)
		}
		now = parsed
	}
	if len(cas) == 0 || *certFile == "" || *keyFile == "" {
		fail("usage: kube-apiserver-check -ca FILE [-ca FILE] -client-cert FILE -client-key FILE")
	}
	var parts [][]byte
	for _, f := range cas {
		b, err := os.ReadFile(f)
		if err != nil {
			fail("%v", err)
		}
		parts = append(parts, b)
	}
	out := json.NewEncoder(os.Stdout)
	bundle, err := parseCertsPEM(bytes.Join(parts, nil))
	if err != nil {
		_ = out.Encode(result{Groups: []string{}, BundleError: err.Error()})
		return
	}
	roots := x509.NewCertPool()
	for _, c := range bundle {
		roots.AddCert(c)
	}
	certPEM, err := os.ReadFile(*certFile)
	if err != nil {
		fail("%v", err)
	}
	keyPEM, err := os.ReadFile(*keyFile)
	if err != nil {
		fail("%v", err)
	}
	clientPair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		fail("client key pair: %v", err)
	}

	serverCert, serverPool, err := serverCertificate(now)
	if err != nil {
		fail("server certificate: %v", err)
	}
	serverConfig := &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequestClientCert,
		ClientCAs:    roots,
		MinVersion:   tls.VersionTLS12,
		Time:         func() time.Time { return now },
	}
	listener, err := tls.Listen("tcp", "127.0.0.1:0", serverConfig)
	if err != nil {
		fail("listen: %v", err)
	}
	defer listener.Close()

	done := make(chan result, 1)
	go func() {
		conn, err := listener.Accept()
		if err != nil {
			done <- result{Groups: []string{}, Error: "accept: " + err.Error()}
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		tlsConn := conn.(*tls.Conn)
		if err := tlsConn.Handshake(); err != nil {
			done <- result{Groups: []string{}, Error: "handshake: " + err.Error()}
			return
		}
		verdict := authenticate(roots, tlsConn.ConnectionState().PeerCertificates, now)
		_, _ = tlsConn.Write([]byte("ok\n"))
		done <- verdict
	}()

	clientConfig := &tls.Config{
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &clientPair, nil
		},
		RootCAs:    serverPool,
		ServerName: "127.0.0.1",
		MinVersion: tls.VersionTLS12,
		Time:       func() time.Time { return now },
	}
	conn, err := tls.Dial("tcp", listener.Addr().String(), clientConfig)
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.ReadAll(conn)
		conn.Close()
	}
	_ = out.Encode(<-done)
}
