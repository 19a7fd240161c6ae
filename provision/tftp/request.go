package tftp

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// Request is a parsed TFTP read or write request (RFC 1350, options RFC 2347-2349).
type Request struct {
	Write   bool // WRQ (refused by the server) rather than RRQ
	Name    string
	Mode    string            // netascii or octet (lower case)
	Options map[string]string // lower-case names
	Blksize int               // 0 when not asked; else 8..65464
	Tsize   int64             // -1 when not asked
}

// Limits of the options the server honours (RFC 2348).
const (
	MinBlksize = 8
	MaxBlksize = 65464
)

// ParseRequest parses one request datagram. It never panics on any input; a malformed request is
// an error (the server drops it). pack.ag/tftp decodes the wire format on the live path; this
// parser is Prybar's statement of what a valid request is, shared by tests and the fuzz target,
// and it applies CleanName, the rule the server uses to map the name into its root.
func ParseRequest(pkt []byte) (Request, error) {
	r := Request{Tsize: -1}
	if len(pkt) < 2 {
		return r, errors.New("short datagram")
	}
	switch op := int(pkt[0])<<8 | int(pkt[1]); op {
	case 1:
	case 2:
		r.Write = true
	default:
		return r, fmt.Errorf("opcode %d is not a request", op)
	}
	body := pkt[2:]
	if len(body) == 0 || body[len(body)-1] != 0 {
		return r, errors.New("request not NUL-terminated")
	}
	fields := bytes.Split(body[:len(body)-1], []byte{0})
	if len(fields) < 2 {
		return r, errors.New("request lacks a mode")
	}
	if len(fields)%2 != 0 {
		return r, errors.New("option without a value")
	}
	name, err := CleanName(string(fields[0]))
	if err != nil {
		return r, err
	}
	r.Name = name
	r.Mode = strings.ToLower(string(fields[1]))
	if r.Mode != "octet" && r.Mode != "netascii" {
		return r, fmt.Errorf("mode %q not supported", fields[1])
	}
	for i := 2; i+1 < len(fields); i += 2 {
		k, v := strings.ToLower(string(fields[i])), string(fields[i+1])
		if k == "" {
			return r, errors.New("empty option name")
		}
		if r.Options == nil {
			r.Options = map[string]string{}
		}
		if _, dup := r.Options[k]; dup {
			return r, fmt.Errorf("option %q repeated", k)
		}
		r.Options[k] = v
		switch k {
		case "blksize":
			n, err := strconv.Atoi(v)
			if err != nil || n < MinBlksize || n > MaxBlksize {
				return r, fmt.Errorf("blksize %q out of range %d..%d", v, MinBlksize, MaxBlksize)
			}
			r.Blksize = n
		case "tsize":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return r, fmt.Errorf("bad tsize %q", v)
			}
			r.Tsize = n
		}
	}
	return r, nil
}

// CleanName maps a requested file name to a path inside the root. Firmware sends names like
// "undionly.kpxe", "/undionly.kpxe" or "pxelinux.cfg\\default": one leading slash is dropped and
// backslashes count as separators. The result must be a valid fs.FS path — no "..", no empty or
// "." elements — so "../etc/passwd" or "a/../../x" is refused rather than cleaned into something
// else.
func CleanName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty file name")
	}
	if strings.ContainsRune(name, 0) {
		return "", errors.New("NUL in file name")
	}
	p := strings.ReplaceAll(name, `\`, "/")
	p = strings.TrimPrefix(p, "/")
	if !fs.ValidPath(p) || p == "." {
		return "", fmt.Errorf("file name %q refused (outside the root or not canonical)", name)
	}
	return p, nil
}
