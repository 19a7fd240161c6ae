package ipxe

import (
	"fmt"
	"net/url"
	"path"
	"strings"
	"text/template"
)

// funcs are the helpers every bootenv template may use besides Data's methods.
var funcs = template.FuncMap{"join": strings.Join, "base": path.Base}

// Data is what bootenv templates (script, cmdline, templates) are rendered with.
type Data struct {
	Machine Machine
	// NIC is the interface that asked (by MAC); zero when the script was asked by machine id.
	NIC  NIC
	NICs []NIC
	// Allocations are the machine's addresses; Allocation is the one on the booting NIC's
	// network when known, else the first.
	Allocations []Allocation
	Allocation  *Allocation
	// Attributes are the machine's node-role attributes (committed data, then executor output, in
	// dependency order; later layers win).
	Attributes map[string]any
	// Bootenv is the environment being rendered (Cmdline already rendered in scripts).
	Bootenv Env
	// BaseURL is where the boot HTTP server is reached (e.g. http://10.0.0.1:8081), no trailing /.
	BaseURL string
	// Token authenticates this boot's template fetches and completion callback.
	Token string
	// Trace identifies this boot: it is carried on the kernel command line and in the agent's
	// requests, so each step of one boot can be found (Machine boot timeline).
	Trace string
	// AgentToken is the discovery agent's per-boot token (see Tokens.IssueAgent): scoped to the
	// machine (or, for an unknown machine, the MAC that asked) and to Trace.
	AgentToken string
}

// Machine is the machine being booted.
type Machine struct {
	ID                                             int
	Name, Serial, UUID, Arch, Vendor, Model, State string
	Bootenv                                        string
	Discovery                                      map[string]any
}

// ShortName is the first label of the machine's name.
func (m Machine) ShortName() string { s, _, _ := strings.Cut(m.Name, "."); return s }

// Domain is the machine's name without its first label.
func (m Machine) Domain() string { _, d, _ := strings.Cut(m.Name, "."); return d }

// NIC is one network interface.
type NIC struct{ MAC, Name string }

// Allocation is one address of the machine.
type Allocation struct {
	Address, Purpose string
	Network          Network
}

// Network is the network an allocation belongs to.
type Network struct {
	Name, CIDR, Router, Netmask string
	Prefix, VLAN                int
}

// Env is the bootenv as templates see it.
type Env struct {
	Name, Kernel, Cmdline string
	Initrd                []string
}

// Asset returns the URL of an asset path (or the reference itself when it is already a URL).
func (d Data) Asset(ref string) string {
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") {
		return ref
	}
	return d.BaseURL + "/boot/assets/" + escapePath(ref)
}

// Template returns the URL at which the named template of this bootenv is served for this boot.
func (d Data) Template(name string) string {
	return fmt.Sprintf("%s/boot/template/%s?machine=%d&token=%s", d.BaseURL, url.PathEscape(name), d.Machine.ID, url.QueryEscape(d.Token))
}

// DoneURL is the completion callback (POST) for this boot.
func (d Data) DoneURL() string {
	return d.BaseURL + "/boot/done?token=" + url.QueryEscape(d.Token)
}

// Attr returns the attribute key (a top-level name) or def when it is absent.
func (d Data) Attr(key string, def any) any {
	if v, ok := d.Attributes[key]; ok && v != nil {
		return v
	}
	return def
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// Script renders the iPXE script of env for d. A bootenv without a script template gets the
// standard one: kernel (with the rendered cmdline and, for UEFI, initrd=NAME for each initrd),
// initrds, boot — and a clear message if boot returns.
func Script(env *Bootenv, d Data) (string, error) {
	d.Bootenv = Env{Name: env.Name, Kernel: env.Kernel, Initrd: env.Initrd}
	cmdline, err := execute("cmdline", env.Cmdline, d)
	if err != nil {
		return "", fmt.Errorf("bootenv %s: %w", env.Name, err)
	}
	d.Bootenv.Cmdline = strings.Join(strings.Fields(cmdline), " ")
	text := env.Script
	if text == "" {
		text = standardScript
	}
	out, err := execute("script", text, d)
	if err != nil {
		return "", fmt.Errorf("bootenv %s: %w", env.Name, err)
	}
	return out, nil
}

// standardScript boots Bootenv.Kernel with Bootenv.Initrd. Each initrd is named after its file so
// that initrd=NAME on the command line finds it under UEFI (BIOS ignores the argument).
const standardScript = `#!ipxe
echo Prybar: {{.Machine.Name}} boots {{.Bootenv.Name}}
kernel {{.Asset .Bootenv.Kernel}}{{range .Bootenv.Initrd}} initrd={{base .}}{{end}}{{with .Bootenv.Cmdline}} {{.}}{{end}}
{{range .Bootenv.Initrd}}initrd --name {{base .}} {{$.Asset .}}
{{end}}boot || goto failed
:failed
echo Prybar: booting {{.Bootenv.Name}} failed
shell
`

// RenderTemplate renders the named template of env.
func RenderTemplate(env *Bootenv, name string, d Data) (string, error) {
	text, ok := env.Templates[name]
	if !ok {
		return "", fmt.Errorf("bootenv %s has no template %q", env.Name, name)
	}
	d.Bootenv = Env{Name: env.Name, Kernel: env.Kernel, Initrd: env.Initrd}
	out, err := execute(name, text, d)
	if err != nil {
		return "", fmt.Errorf("bootenv %s: %w", env.Name, err)
	}
	return out, nil
}

func execute(name, text string, d Data) (string, error) {
	t, err := parseTemplate(name, text)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "", err
	}
	return b.String(), nil
}

// ErrorScript is what a machine gets when its script cannot be rendered: iPXE prints the reason
// on the console and stops at a shell, rather than booting something else or looping.
func ErrorScript(msg string) string {
	msg = strings.Join(strings.Fields(msg), " ")
	// iPXE expands ${…} in echo: keep the message literal.
	msg = strings.NewReplacer("$", "_", "\\", "/").Replace(msg)
	return "#!ipxe\necho Prybar cannot boot this machine: " + msg + "\nshell\n"
}
