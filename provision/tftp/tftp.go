// Package tftp is Prybar's read-only TFTP server for network boot: it hands PXE firmware the iPXE
// binaries (undionly.kpxe, ipxe.efi, snponly.efi …) from a root directory, with the blksize and
// tsize options (pack.ag/tftp negotiates them).
//
// Confinement comes from the file system, not from string checks: the server reads through an
// fs.FS, whose paths cannot be absolute or contain "..", and the default root is an os.Root, which
// also refuses symbolic links that lead outside it (os.DirFS would follow them). Write requests
// are refused.
package tftp

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"pack.ag/tftp"
)

// DefaultRoot is where Debian's ipxe package installs the iPXE binaries.
const DefaultRoot = "/usr/lib/ipxe"

// Transfer describes one finished (or refused) read request.
type Transfer struct {
	Client   netip.Addr
	File     string // the name the client asked for
	Bytes    int64  // bytes sent
	Start    time.Time
	Duration time.Duration
	Err      error // nil when the whole file was sent
}

// Config configures a Server.
type Config struct {
	// Listen is the UDP address, e.g. ":69" or "127.0.0.1:0".
	Listen string
	// Root is the tree served. Nil means OpenRoot(DefaultRoot).
	Root fs.FS
	// OnTransfer, when set, is called after every read request (from the transfer's goroutine).
	OnTransfer func(Transfer)
	Log        *slog.Logger
}

// Server is a running TFTP server.
type Server struct {
	srv    *tftp.Server
	conn   *net.UDPConn
	served chan struct{} // closed when srv.Serve has returned

	closeOnce sync.Once
	closeErr  error
}

// OpenRoot opens dir as a confined file system: paths are resolved inside dir, and symbolic links
// pointing outside it are refused when opened.
func OpenRoot(dir string) (fs.FS, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("tftp root: %w", err)
	}
	return r.FS(), nil
}

// Start listens and serves until ctx ends or Close is called.
func (c Config) Start(ctx context.Context) (*Server, error) {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Root == nil {
		root, err := OpenRoot(DefaultRoot)
		if err != nil {
			return nil, err
		}
		c.Root = root
	}
	addr, err := net.ResolveUDPAddr("udp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("tftp listen %q: %w", c.Listen, err)
	}
	conn, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("tftp listen: %w", err)
	}
	srv, err := tftp.NewServer(c.Listen)
	if err != nil {
		conn.Close()
		return nil, err
	}
	srv.ReadHandler(&handler{cfg: c})
	s := &Server{srv: srv, conn: conn, served: make(chan struct{})}
	go func() {
		defer close(s.served)
		_ = srv.Serve(conn) // it returns once conn is closed
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Close()
		case <-s.served:
		}
	}()
	c.Log.Info("tftp listening", "addr", conn.LocalAddr().String())
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() *net.UDPAddr { return s.conn.LocalAddr().(*net.UDPAddr) }

// Close stops the server (transfers in flight end with an error). It may be called more than
// once, also at the same time as the start context ends. pack.ag/tftp's own Close may not: it
// panics the second time (it closes a channel), and before Serve has begun (its connection is
// still nil), which made a test's cleanup crash now and then. So the socket, which is ours, is
// closed first; once Serve has returned, the library's Close ends its connection manager.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.conn.Close()
		<-s.served
		if s.srv.Connected() {
			_ = s.srv.Close() // its connection is ours, closed above
		}
	})
	return s.closeErr
}

type handler struct{ cfg Config }

func (h *handler) ServeTFTP(w tftp.ReadRequest) {
	start := time.Now()
	t := Transfer{File: w.Name(), Start: start}
	if a, ok := netip.AddrFromSlice(w.Addr().IP); ok {
		t.Client = a.Unmap()
	}
	t.Bytes, t.Err = h.serve(w)
	t.Duration = time.Since(start)
	if t.Err != nil {
		h.cfg.Log.Info("tftp transfer failed", "client", t.Client, "file", t.File, "err", t.Err)
	} else {
		h.cfg.Log.Debug("tftp transfer", "client", t.Client, "file", t.File, "bytes", t.Bytes, "duration", t.Duration)
	}
	if h.cfg.OnTransfer != nil {
		h.cfg.OnTransfer(t)
	}
}

func (h *handler) serve(w tftp.ReadRequest) (int64, error) {
	p, err := CleanName(w.Name())
	if err != nil {
		w.WriteError(tftp.ErrCodeAccessViolation, err.Error())
		return 0, err
	}
	f, err := h.cfg.Root.Open(p)
	if err != nil {
		// Not found, a directory, or refused by the root (a link out of it): the client learns
		// only that it cannot have the file.
		w.WriteError(tftp.ErrCodeFileNotFound, fmt.Sprintf("%s: not found", p))
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		w.WriteError(tftp.ErrCodeFileNotFound, fmt.Sprintf("%s: not a file", p))
		if err == nil {
			err = fmt.Errorf("%s: not a regular file", p)
		}
		return 0, err
	}
	w.WriteSize(st.Size())
	return io.Copy(w, f)
}
