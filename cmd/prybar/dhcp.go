package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/prybar/prybar/internal/store"
	"github.com/prybar/prybar/provision/dhcp"
)

// dhcpFlags are serve's DHCP flags (kept apart so the serve command grows by three lines).
type dhcpFlags struct {
	mode, iface, serverIP, scriptURL, journal *string
}

func addDHCPFlags(fs *flag.FlagSet) dhcpFlags {
	return dhcpFlags{
		mode:      fs.String("dhcp", "off", "DHCP server mode: off, authoritative, proxy (boot information only) or shadow (decide and record, send nothing)"),
		iface:     fs.String("dhcp-iface", "", "interface the DHCP server listens on (required unless --dhcp off)"),
		serverIP:  fs.String("dhcp-server-ip", "", "server identifier and TFTP server address (default: the interface's first IPv4 address)"),
		journal:   fs.String("dhcp-journal", "", "directory where acknowledged lease changes are appended before their ACKs leave (default with a SQLite file: beside it, DB-dhcp-journal; \"off\": each ACK waits for its own database transaction, as with PostgreSQL)"),
		scriptURL: fs.String("dhcp-boot-url", "", "URL of the per-machine iPXE script handed to iPXE clients (?mac= is appended; default: --boot-url/boot/ipxe)"),
	}
}

// startDHCP starts the DHCP server the flags ask for; nil when --dhcp off.
// The script URL defaults to the boot HTTP server's (--boot-url, else the boot or main listener).
func startDHCP(ctx context.Context, f dhcpFlags, boot bootFlags, st *store.Store, log *slog.Logger) (*dhcp.Server, error) {
	mode, err := dhcp.ParseMode(*f.mode)
	if err != nil {
		return nil, err
	}
	if mode == dhcp.Off {
		return nil, nil
	}
	if *f.iface == "" {
		return nil, fmt.Errorf("--dhcp %s needs --dhcp-iface", mode)
	}
	script := *f.scriptURL
	if script == "" {
		if script, err = boot.scriptURL(); err != nil {
			return nil, err
		}
	}
	cfg := dhcp.Config{Mode: mode, Interface: *f.iface, Store: st, Log: log, Boot: dhcp.Boot{ScriptURL: script}}
	switch *f.journal {
	case "off":
	case "":
		if db := st.SQLiteFile(); db != "" {
			cfg.Journal = db + "-dhcp-journal"
		}
	default:
		if st.SQLiteFile() == "" {
			// A journal on one replica's disk would strand acknowledged leases if another took over.
			return nil, fmt.Errorf("--dhcp-journal needs a SQLite database file")
		}
		cfg.Journal = *f.journal
	}
	if *f.serverIP != "" {
		if cfg.ServerIP, err = netip.ParseAddr(*f.serverIP); err != nil || !cfg.ServerIP.Is4() {
			return nil, fmt.Errorf("--dhcp-server-ip %q: not an IPv4 address", *f.serverIP)
		}
	}
	srv, err := cfg.Start(ctx)
	if err != nil {
		return nil, fmt.Errorf("dhcp: %w", err)
	}
	log.Info("dhcp serving", "mode", mode, "iface", *f.iface, "script", script, "journal", cfg.Journal)
	return srv, nil
}
