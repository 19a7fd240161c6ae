package catalog

import (
	"embed"
	"sync"
)

//go:embed builtin/*.yaml
var builtinFS embed.FS

var builtin = sync.OnceValues(func() (*Catalog, error) { return LoadFS(builtinFS, "builtin") })

// Builtin returns the catalogue shipped with Prybar: noop-base, test-step,
// the bmc-* roles, pxe-boot-once and the provisioner-base → network →
// os-install → ready demonstration chain. It panics if the embedded files
// are invalid, which a test rules out.
func Builtin() *Catalog {
	c, err := builtin()
	if err != nil {
		panic("catalog: built-in roles: " + err.Error())
	}
	return c
}
