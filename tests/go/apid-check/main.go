// apid-check: a TLS handshake with client authentication, checked the way Talos's apid checks it.
//
// Test helper for talvault (tests/it/issue.rs); Go standard library only, no modules. It serves
// TLS 1.3 on 127.0.0.1:0 with tls.RequireAndVerifyClientCert and ClientCAs = the -ca files, adds
// apid's extra EKU check (siderolabs/talos: internal/app/apid/service.go verifyExtKeyUsage), and
// connects to itself with the client certificate and key loaded through tls.X509KeyPair, as
// talosctl loads a talosconfig's crt/key (pkg/machinery/client/connection.go). It prints one
// JSON object: whether the server accepted the client, the roles apid would read
// (Subject.Organization of the leaf, trimmed, empty values skipped, sorted: role.Parse), and
// the server-side error. It must not be used for anything but tests.
//
// The node's clock is -now (RFC 3339) when given: Go reads the real clock directly, not through
// libc, so a test run under libfaketime passes the time it sees; both ends of the handshake check
// validity at that instant.
//
// Usage: apid-check -ca os-ca.pem [-ca other.pem] -client-cert crt.pem -client-key key.pem [-now T]
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"sort"
	"strings"
	"time"
)

type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }

type result struct {
	Accepted     bool     `json:"accepted"`
	Roles        []string `json:"roles"`
	Organization []string `json:"organization"`
	Error        string   `json:"error,omitempty"`
	KeyPairError string   `json:"keypair_error,omitempty"`
}

// verifyExtKeyUsage is apid's check: every non-CA certificate in the first verified chain must
// have ExtKeyUsage exactly [ClientAuth]. (slices.Equal is not in Go 1.19's standard library.)
func verifyExtKeyUsage(_ [][]byte, verifiedChains [][]*x509.Certificate) error {
	if len(verifiedChains) == 0 {
		return errors.New("no verified chains")
	}
	for _, cert := range verifiedChains[0] {
		if cert.IsCA {
			continue
		}
		if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
			return fmt.Errorf("certificate %q is missing the client auth extended key usage", cert.Subject)
		}
	}
	return nil
}

// parseRoles follows siderolabs/talos: pkg/machinery/role/role.go Parse + Set.Strings.
func parseRoles(orgs []string) []string {
	set := map[string]struct{}{}
	for _, r := range orgs {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		set[r] = struct{}{}
	}
	out := []string{}
	for r := range set {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

func serverCertificate(now time.Time) (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "apid-check"},
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
	fmt.Fprintf(os.Stderr, "apid-check: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	var cas fileList
	flag.Var(&cas, "ca", "PEM file of a CA apid accepts (repeatable)")
	certFile := flag.String("client-cert", "", "client certificate PEM (talosconfig crt, decoded)")
	keyFile := flag.String("client-key", "", "client key PEM (talosconfig key, decoded)")
	nowFlag := flag.String("now", "", "the node's clock, RFC 3339 (default: the real clock)")
	flag.Parse()
	now := time.Now()
	if *nowFlag != "" {
		parsed, err := time.Parse(time.RFC3339, *nowFlag)
		if err != nil {
			fail("-now: %v", err)
		}
		now = parsed
	}
	clock := func() time.Time { return now }
	if len(cas) == 0 || *certFile == "" || *keyFile == "" {
		fail("usage: apid-check -ca FILE [-ca FILE] -client-cert FILE -client-key FILE")
	}

	clientCAs := x509.NewCertPool()
	for _, f := range cas {
		pem, err := os.ReadFile(f)
		if err != nil {
			fail("%v", err)
		}
		if !clientCAs.AppendCertsFromPEM(pem) {
			fail("%s: no certificate", f)
		}
	}
	certPEM, err := os.ReadFile(*certFile)
	if err != nil {
		fail("%v", err)
	}
	keyPEM, err := os.ReadFile(*keyFile)
	if err != nil {
		fail("%v", err)
	}
	out := json.NewEncoder(os.Stdout)

	clientPair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		_ = out.Encode(result{Roles: []string{}, Organization: []string{}, KeyPairError: err.Error()})
		return
	}

	serverCert, serverPool, err := serverCertificate(now)
	if err != nil {
		fail("server certificate: %v", err)
	}
	serverConfig := &tls.Config{
		Certificates:          []tls.Certificate{serverCert},
		ClientAuth:            tls.RequireAndVerifyClientCert,
		ClientCAs:             clientCAs,
		MinVersion:            tls.VersionTLS13,
		Time:                  clock,
		VerifyPeerCertificate: verifyExtKeyUsage,
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
			done <- result{Error: "accept: " + err.Error()}
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		tlsConn := conn.(*tls.Conn)
		if err := tlsConn.Handshake(); err != nil {
			done <- result{Roles: []string{}, Organization: []string{}, Error: err.Error()}
			return
		}
		peer := tlsConn.ConnectionState().PeerCertificates[0]
		_, _ = tlsConn.Write([]byte("ok\n"))
		orgs := peer.Subject.Organization
		if orgs == nil {
			orgs = []string{}
		}
		done <- result{Accepted: true, Roles: parseRoles(orgs), Organization: orgs}
	}()

	clientConfig := &tls.Config{
		Certificates: []tls.Certificate{clientPair},
		RootCAs:      serverPool,
		ServerName:   "127.0.0.1",
		MinVersion:   tls.VersionTLS13,
		Time:         clock,
	}
	conn, err := tls.Dial("tcp", listener.Addr().String(), clientConfig)
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		// In TLS 1.3 the server's verdict on the client certificate arrives after the client's
		// handshake completes; reading surfaces it.
		_, _ = io.ReadAll(conn)
		conn.Close()
	}
	_ = out.Encode(<-done)
}
