package main

import (
	"bufio"
	"context"
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
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/prybar/prybar/ent/user"
	"github.com/prybar/prybar/internal/access"
	"github.com/prybar/prybar/internal/auth"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/httpserver"
	"github.com/prybar/prybar/internal/store"
)

// DemoPassword is the password of the demo fixture's users (serve --fixtures demo only).
const DemoPassword = "prybar-demo"

const usersUsage = `usage: prybar users <subcommand> [flags]

subcommands:
  add [--db DSN] --role ROLE NAME   add a user (password from a prompt, or the first line of stdin)

Roles: viewer, operator, admin. Run 'prybar users add --help' for its flags.
`

const tokensUsage = `usage: prybar tokens <subcommand> [flags]

subcommands:
  create [--db DSN] --role ROLE NAME   create an API token and print it (shown only once)

Run 'prybar tokens create --help' for its flags.
`

// stdin is where passwords are read from (tests replace it).
var stdin io.Reader = os.Stdin

func usersCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprint(stdout, usersUsage)
		if len(args) == 0 {
			return errors.New("users: no subcommand given")
		}
		return nil
	}
	if args[0] != "add" {
		fmt.Fprint(stderr, usersUsage)
		return fmt.Errorf("unknown users command %q (want add)", args[0])
	}
	fs := newFlags("users add", "[--db DSN] --role ROLE NAME")
	db := fs.String("db", store.DefaultDSN, "database: a SQLite file path, or postgres://…")
	roleName := fs.String("role", "", "viewer, operator or admin (required)")
	if err := parseFlags(fs, args[1:], stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 || *roleName == "" {
		return errors.New("usage: prybar users add [--db DSN] --role ROLE NAME")
	}
	role, err := access.ParseRole(*roleName)
	if err != nil {
		return err
	}
	password, err := readPassword(stdout, stderr)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	u, err := auth.New(st, nil).CreateUser(events.WithActor(ctx, "cli"), fs.Arg(0), password, role)
	if err != nil {
		return fmt.Errorf("users add %s: %w", fs.Arg(0), err)
	}
	fmt.Fprintf(stdout, "user %s (%s) added\n", u.Name, u.Role)
	return nil
}

// readPassword prompts twice on a terminal; otherwise it reads the first line of stdin (for
// scripts: echo "$PW" | prybar users add …).
func readPassword(stdout, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "Password: ")
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(stderr, "Again: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		if string(p1) != string(p2) {
			return "", errors.New("the passwords differ")
		}
		return string(p1), nil
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password from stdin: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if len(line) < auth.MinPasswordLength {
		return "", fmt.Errorf("the password (first line of stdin) must have at least %d characters", auth.MinPasswordLength)
	}
	return line, nil
}

func tokensCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprint(stdout, tokensUsage)
		if len(args) == 0 {
			return errors.New("tokens: no subcommand given")
		}
		return nil
	}
	if args[0] != "create" {
		fmt.Fprint(stderr, tokensUsage)
		return fmt.Errorf("unknown tokens command %q (want create)", args[0])
	}
	fs := newFlags("tokens create", "[--db DSN] --role ROLE [--user NAME] [--expires DURATION] NAME")
	db := fs.String("db", store.DefaultDSN, "database: a SQLite file path, or postgres://…")
	roleName := fs.String("role", "", "viewer, operator or admin (required)")
	owner := fs.String("user", "", "the user owning the token (default: a standalone token for automation)")
	expires := fs.Duration("expires", 0, "lifetime, e.g. 720h (default: no expiry)")
	if err := parseFlags(fs, args[1:], stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 || *roleName == "" {
		return errors.New("usage: prybar tokens create [--db DSN] --role ROLE NAME")
	}
	role, err := access.ParseRole(*roleName)
	if err != nil {
		return err
	}
	if *expires < 0 {
		return errors.New("--expires must be positive")
	}
	st, err := openStore(ctx, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	o := auth.TokenOptions{Name: fs.Arg(0), Role: role}
	if *expires > 0 {
		t := time.Now().Add(*expires)
		o.ExpiresAt = &t
	}
	if *owner != "" {
		u, err := st.Client.User.Query().Where(user.Name(*owner)).Only(ctx)
		if err != nil {
			return fmt.Errorf("--user %s: no such user", *owner)
		}
		o.UserID = u.ID
	}
	secret, _, err := auth.New(st, nil).CreateToken(events.WithActor(ctx, "cli"), o)
	if err != nil {
		return fmt.Errorf("tokens create %s: %w", fs.Arg(0), err)
	}
	fmt.Fprintf(stderr, "token %s (%s) created; it is shown only now:\n", o.Name, role)
	fmt.Fprintln(stdout, secret)
	return nil
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// selfSignedCert loads the certificate at certFile/keyFile, generating a self-signed ECDSA one
// (10 years, for the host names and addresses given plus localhost) when they do not exist yet:
// BMC networks rarely have a CA, and a certificate that changes on every start would defeat
// pinning it in clients.
func selfSignedCert(certFile, keyFile string, hosts []string) (tls.Certificate, bool, error) {
	if _, err := os.Stat(certFile); err == nil {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		return c, false, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, false, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "prybar (self-signed)"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if h, err := os.Hostname(); err == nil {
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, false, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, false, err
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o755); err != nil {
		return tls.Certificate{}, false, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return tls.Certificate{}, false, err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, false, err
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	return c, true, err
}

// authFlags are serve's access-control and TLS flags.
type authFlags struct {
	tlsCert, tlsKey *string
	tlsSelfSigned   *bool
	allowedOrigins  multiFlag
	corsOrigins     multiFlag
	rateLimit       *float64
	rateBurst       *int
}

func addAuthFlags(fs *flag.FlagSet) *authFlags {
	f := &authFlags{
		tlsCert:       fs.String("tls-cert", "", "serve HTTPS with this certificate (PEM; with --tls-key)"),
		tlsKey:        fs.String("tls-key", "", "private key of --tls-cert (PEM)"),
		tlsSelfSigned: fs.Bool("tls-self-signed", false, "serve HTTPS with a self-signed certificate, generated on first start and kept (prybar-tls.crt/.key beside the database, or --tls-cert/--tls-key paths)"),
		rateLimit:     fs.Float64("rate-limit", 20, "API requests per second per identity (and sign-ins per client); 0 disables"),
		rateBurst:     fs.Int("rate-burst", 60, "burst size of --rate-limit"),
	}
	fs.Var(&f.allowedOrigins, "allowed-origin", "a browser origin besides the server's own allowed to open WebSockets, e.g. https://console.example:8443 (repeatable)")
	fs.Var(&f.corsOrigins, "cors-origin", "enable CORS for this origin (token-authenticated calls from another site; repeatable; off by default)")
	return f
}

func (f *authFlags) config() httpserver.AuthConfig {
	return httpserver.AuthConfig{AllowedOrigins: f.allowedOrigins, CORSOrigins: f.corsOrigins, RateLimit: *f.rateLimit, RateBurst: *f.rateBurst}
}

func (f *authFlags) tlsConfig(listen, dsn string, stderr io.Writer) (*tls.Config, error) {
	cert, key := *f.tlsCert, *f.tlsKey
	if (cert == "") != (key == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if !*f.tlsSelfSigned && cert == "" {
		return nil, nil
	}
	var c tls.Certificate
	var err error
	if *f.tlsSelfSigned {
		if cert == "" {
			dir := filepath.Dir(secretKeyPath("", dsn))
			cert, key = filepath.Join(dir, "prybar-tls.crt"), filepath.Join(dir, "prybar-tls.key")
		}
		host, _, _ := net.SplitHostPort(listen)
		var created bool
		c, created, err = selfSignedCert(cert, key, []string{host})
		if created {
			fmt.Fprintf(stderr, "generated a self-signed TLS certificate: %s\n", cert)
		}
	} else {
		c, err = tls.LoadX509KeyPair(cert, key)
	}
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s: %w", cert, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}, nil
}
