package ipxe

import (
	"strings"
	"testing"
	"time"
)

func testData() Data {
	return Data{
		Machine: Machine{ID: 42, Name: "web01.a01.ams1.example", Bootenv: "debian-12-install", Arch: "x86_64"},
		NIC:     NIC{MAC: "52:54:00:a1:01:01", Name: "eno1"},
		NICs:    []NIC{{MAC: "52:54:00:a1:01:01", Name: "eno1"}},
		Allocations: []Allocation{{Address: "10.0.0.42", Purpose: "admin",
			Network: Network{Name: "admin", CIDR: "10.0.0.0/24", Router: "10.0.0.1", Prefix: 24, Netmask: "255.255.255.0"}}},
		Attributes: map[string]any{"debian_mirror": "mirror.example"},
		BaseURL:    "http://10.0.0.1:8081",
		Token:      "TOKEN",
		AgentToken: "AGENTTOKEN",
		Trace:      "TRACE",
	}
}

func builtin(t *testing.T, name string) *Bootenv {
	t.Helper()
	b, ok := BuiltinCatalog().Get(name)
	if !ok {
		t.Fatalf("no built-in %s", name)
	}
	return b
}

// The built-in scripts, compared as whole texts (a change to a built-in shows here, line by line).
func TestScriptBuiltins(t *testing.T) {
	for _, tc := range []struct{ env, want string }{
		{"discovery", `#!ipxe
echo Prybar: web01.a01.ams1.example boots discovery
kernel http://10.0.0.1:8081/boot/assets/discovery/vmlinuz initrd=initrd quiet cryptomgr.notests no_timer_check console=tty0 console=ttyS0,115200 panic=10 prybar.ip=${ip}/${netmask} prybar.gw=${gateway} prybar.url=http://10.0.0.1:8081 prybar.machine=42 prybar.token=AGENTTOKEN prybar.trace=TRACE prybar.mac=52:54:00:a1:01:01
initrd --name initrd http://10.0.0.1:8081/boot/assets/discovery/initrd
boot || goto failed
:failed
echo Prybar: booting discovery failed
shell
`},
		{"local", `#!ipxe
echo Prybar: web01.a01.ams1.example boots from its local disk
iseq ${platform} efi && exit ||
sanboot --no-describe --drive 0x80 || exit
`},
		{"debian-12-install", `#!ipxe
echo Prybar: web01.a01.ams1.example boots debian-12-install
kernel http://10.0.0.1:8081/boot/assets/debian-12/linux initrd=initrd.gz auto=true priority=critical url=http://10.0.0.1:8081/boot/template/preseed?machine=42&token=TOKEN hostname=web01 domain=a01.ams1.example interface=auto console=ttyS0,115200 console=tty0
initrd --name initrd.gz http://10.0.0.1:8081/boot/assets/debian-12/initrd.gz
boot || goto failed
:failed
echo Prybar: booting debian-12-install failed
shell
`},
	} {
		got, err := Script(builtin(t, tc.env), testData())
		if err != nil {
			t.Fatalf("%s: %v", tc.env, err)
		}
		if got != tc.want {
			t.Errorf("Script(%s) =\n%s\nwant\n%s", tc.env, got, tc.want)
		}
	}
}

func TestPreseed(t *testing.T) {
	got, err := RenderTemplate(builtin(t, "debian-12-install"), "preseed", testData())
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"# Preseed for web01.a01.ams1.example (machine 42), rendered by Prybar.\n",
		"d-i netcfg/get_hostname string web01\n",
		"d-i netcfg/get_domain string a01.ams1.example\n",
		"d-i mirror/http/hostname string mirror.example\n",
		"d-i passwd/user-password-crypted password !\n",
		"d-i preseed/late_command string wget -q -O /dev/null --post-data=done 'http://10.0.0.1:8081/boot/done?token=TOKEN'\n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("preseed lacks %q; got\n%s", line, got)
		}
	}
}

// A script template that fails at render time (a missing map key) is an error, which the handler
// turns into an error script — never an empty answer.
func TestRenderFailure(t *testing.T) {
	env := &Bootenv{Name: "broken", Script: "#!ipxe\nchain {{.Attributes.missing}}\n"}
	_, err := Script(env, testData())
	if err == nil || !strings.Contains(err.Error(), "bootenv broken") || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Script(broken) error = %v, want one naming the bootenv and the key", err)
	}
	want := "#!ipxe\necho Prybar cannot boot this machine: bootenv broken: a _{x} b\nshell\n"
	if got := ErrorScript("bootenv broken:\n a ${x} b"); got != want {
		t.Errorf("ErrorScript = %q, want %q", got, want)
	}
}

func TestTokens(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tk := Tokens{Key: []byte("k1"), TTL: time.Hour}
	tok := tk.Issue(42, "debian-12-install", now)
	if id, env, err := tk.Verify(tok, now.Add(59*time.Minute)); err != nil || id != 42 || env != "debian-12-install" {
		t.Fatalf("Verify = %d %q %v", id, env, err)
	}
	for name, bad := range map[string]struct {
		tok string
		at  time.Time
		key string
	}{
		"expired":   {tok, now.Add(61 * time.Minute), "k1"},
		"other key": {tok, now, "k2"},
		"tampered":  {strings.Replace(tok, tok[:3], "NDM", 1), now, "k1"},
		"no sig":    {strings.Split(tok, ".")[0], now, "k1"},
		"empty":     {"", now, "k1"},
		"garbage":   {"a.b.c", now, "k1"},
		"empty key": {tok, now, ""},
	} {
		if _, _, err := (Tokens{Key: []byte(bad.key), TTL: time.Hour}).Verify(bad.tok, bad.at); err == nil {
			t.Errorf("%s: Verify accepted", name)
		}
	}
}
