package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/agentapi"
	"github.com/prybar/prybar/provision/ipxe"
	"github.com/prybar/prybar/provision/tftp"
)

// bootFlags are serve's network-boot flags.
type bootFlags struct {
	listen, url, tftpListen, tftpRoot, assets string
	mainListen                                string // --listen, for the default boot URL
	discoveredName                            string
}

func (b *bootFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&b.listen, "boot-listen", "", "extra address serving only the boot HTTP paths (/boot/…); they are always on --listen too")
	fs.StringVar(&b.url, "boot-url", "", "base URL machines reach the boot HTTP server at, put into scripts and DHCP answers (default: from each request's Host)")
	fs.StringVar(&b.tftpListen, "tftp-listen", "", `TFTP address, e.g. ":69" (default: TFTP off)`)
	fs.StringVar(&b.tftpRoot, "tftp-root", tftp.DefaultRoot, "directory served over TFTP (the iPXE binaries)")
	fs.StringVar(&b.assets, "boot-assets", "", "directory of kernels, initrds and images served at /boot/assets/")
	fs.StringVar(&b.discoveredName, "discovered-name", "d-{mac}.discovered", "name of a machine the discovery agent reports for the first time; {mac} is its boot NIC's MAC without colons")
}

// scriptURL is the URL DHCP hands iPXE clients: --boot-url, else the boot or main listener.
func (b *bootFlags) scriptURL() (string, error) {
	base := b.url
	if base == "" {
		addr := b.listen
		if addr == "" {
			addr = b.mainListen
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil || host == "" || net.ParseIP(host).IsUnspecified() {
			return "", fmt.Errorf("--dhcp needs --boot-url: machines cannot reach %q", addr)
		}
		base = "http://" + addr
	}
	return strings.TrimSuffix(base, "/") + "/boot/ipxe", nil
}

// startBoot stores the built-in bootenvs and starts the TFTP server and the extra boot listener
// when asked. It returns the boot handler (mounted on the main listener too) and a stop function.
func startBoot(ctx context.Context, st *store.Store, log *slog.Logger, f bootFlags, secretKey []byte, agentSrv http.Handler) (*ipxe.Handler, func(), error) {
	if _, err := ipxe.Load(events.WithActor(ctx, "bootenvs"), st, ipxe.BuiltinCatalog()); err != nil {
		return nil, nil, fmt.Errorf("built-in bootenvs: %w", err)
	}
	db := &ipxe.DB{Store: st, Log: log}
	h := &ipxe.Handler{Backend: db, Tokens: ipxe.Tokens{Key: bootTokenKey(secretKey)}, BaseURL: f.url, Log: log}
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	if f.assets != "" {
		root, err := ipxe.OpenAssets(f.assets)
		if err != nil {
			return nil, nil, fmt.Errorf("--boot-assets: %w", err)
		}
		h.Assets = root
		stops = append(stops, func() { root.Close() })
	}
	if f.tftpListen != "" {
		root, err := tftp.OpenRoot(f.tftpRoot)
		if err != nil {
			return nil, nil, fmt.Errorf("--tftp-root: %w", err)
		}
		srv, err := tftp.Config{Listen: f.tftpListen, Root: root, Log: log, OnTransfer: func(t tftp.Transfer) {
			ch := map[string]any{"file": t.File, "bytes": t.Bytes, "duration_ms": t.Duration.Milliseconds(), "client": t.Client.String(),
				"start": t.Start.UTC().Format(time.RFC3339Nano)}
			if t.Err != nil {
				ch["error"] = t.Err.Error()
			}
			db.Record(ctx, "boot.tftp", db.MachineByIP(ctx, t.Client), ch)
		}}.Start(ctx)
		if err != nil {
			stop()
			return nil, nil, err
		}
		stops = append(stops, func() { srv.Close() })
	}
	if f.listen != "" {
		ln, err := net.Listen("tcp", f.listen)
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("--boot-listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/boot/", h)
		if agentSrv != nil {
			mux.Handle("/agent/", agentSrv)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("boot http", "err", err)
			}
		}()
		log.Info("boot http listening", "addr", ln.Addr().String())
		stops = append(stops, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		})
	}
	return h, stop, nil
}

// newAgentServer is the discovery agent's side of the boot: it verifies the agent tokens the boot
// scripts carry (same key as the boot tokens).
func newAgentServer(st *store.Store, log *slog.Logger, secretKey []byte, namePattern string) *agentapi.Server {
	return &agentapi.Server{Store: st, Tokens: ipxe.Tokens{Key: bootTokenKey(secretKey)}, Log: log, NamePattern: namePattern}
}

// bootTokenKey derives the boot-token key from the key that seals BMC passwords, so every replica
// given the same --secret-key-file accepts the others' tokens, and the two uses never share a key.
func bootTokenKey(secretKey []byte) []byte {
	m := hmac.New(sha256.New, secretKey)
	m.Write([]byte("prybar boot tokens v1"))
	return m.Sum(nil)
}

func bootenvsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "load" {
		return errors.New("usage: prybar bootenvs load [--db DSN] DIR")
	}
	fs := flag.NewFlagSet("bootenvs load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", store.DefaultDSN, "database: a SQLite file path, or postgres://…")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: prybar bootenvs load [--db DSN] DIR")
	}
	// Validate before touching the database: a bad directory changes nothing.
	cat, err := ipxe.ReadDir(fs.Arg(0))
	if err != nil {
		return err
	}
	st, err := openStore(ctx, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := ipxe.Load(events.WithActor(ctx, "bootenvs-load"), st, cat)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.String())
	return nil
}
