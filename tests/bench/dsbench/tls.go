package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"sync"
	"time"
)

// The TLS + HTTP/2 fan-out scenarios serve over https with a certificate
// made here: self-signed, for 127.0.0.1 and localhost, valid for a day. Every
// dsbench client trusts the certificate named by $DSBENCH_CA_FILE (run.sh
// exports it for those scenarios), so wait, setup and the control client of
// fanout work against the https server as they do against plain HTTP.

// caEnv names the PEM file of the certificate the clients trust.
const caEnv = "DSBENCH_CA_FILE"

// cmdGenCert writes a self-signed certificate and its key (PEM).
func cmdGenCert(args []string) error {
	fs := flag.NewFlagSet("gencert", flag.ExitOnError)
	certPath := fs.String("cert", "", "certificate PEM to write")
	keyPath := fs.String("key", "", "private key PEM to write")
	fs.Parse(args)
	if *certPath == "" || *keyPath == "" {
		return errors.New("-cert and -key are required")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return fmt.Errorf("serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "dsbench loopback"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal key: %w", err)
	}
	if err := os.WriteFile(*certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(*keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}

var (
	tlsOnce sync.Once
	tlsConf *tls.Config
	tlsErr  error
)

// clientTLS is the TLS configuration of every dsbench client: the system
// roots, or only the certificate in $DSBENCH_CA_FILE when it is set.
func clientTLS() (*tls.Config, error) {
	tlsOnce.Do(func() {
		path := os.Getenv(caEnv)
		if path == "" {
			return
		}
		pool, err := certPool(path)
		if err != nil {
			tlsErr = fmt.Errorf("%s: %w", caEnv, err)
			return
		}
		tlsConf = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	})
	if tlsConf == nil {
		return nil, tlsErr
	}
	return tlsConf.Clone(), tlsErr
}

// certPool returns a pool that trusts the certificates in the PEM file at
// path (gencert's, for the TLS scenarios and h2floor).
func certPool(path string) (*x509.CertPool, error) {
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("no certificate in %s", path)
	}
	return pool, nil
}
