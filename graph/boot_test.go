package graph_test

import (
	"context"
	"strings"
	"testing"

	"github.com/prybar/prybar/ent"
	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/internal/events"
	"github.com/prybar/prybar/provision/ipxe"
)

// bootenvs, setBootenv (validated: an unknown bootenv is a NOT_FOUND domain error and changes
// nothing) and the bootScript preview, over GraphQL on SQLite and PostgreSQL.
func TestBootOverGraphQL(t *testing.T) {
	apitest.ForEachDB(t, func(t *testing.T, b apitest.Backend) {
		st := apitest.Open(t, apitest.DSN(t, b))
		ctx := events.WithActor(context.Background(), "test")
		if _, err := ipxe.Load(ctx, st, ipxe.BuiltinCatalog()); err != nil {
			t.Fatal(err)
		}
		var id int
		if err := st.Tx(ctx, func(ctx context.Context, tx *ent.Tx) error {
			m, err := tx.Machine.Create().SetName("web01.a01.ams1.example").Save(ctx)
			id = m.ID
			return err
		}); err != nil {
			t.Fatal(err)
		}
		srv := apitest.Serve(t, st)

		var envs struct {
			Bootenvs []struct {
				Name          string
				TemplateNames []string
				Builtin       bool
				Source        string
			}
		}
		srv.Query(t, `{ bootenvs { name templateNames builtin source } }`, nil, &envs)
		var names []string
		for _, e := range envs.Bootenvs {
			names = append(names, e.Name)
			if !e.Builtin || !strings.HasPrefix(e.Source, "builtin/builtin.yaml:") {
				t.Errorf("%s: builtin=%v source=%q", e.Name, e.Builtin, e.Source)
			}
		}
		if strings.Join(names, ",") != "debian-12-install,discovery,local" || strings.Join(envs.Bootenvs[0].TemplateNames, ",") != "preseed" {
			t.Fatalf("bootenvs = %+v", envs.Bootenvs)
		}

		type payload struct {
			SetBootenv struct {
				Machine *struct{ Bootenv string }
				Errors  []struct{ Field, Code, Message string }
			}
		}
		const set = `mutation($id: ID!, $env: String!) { setBootenv(machineID: $id, bootenv: $env) { machine { bootenv } errors { field code message } } }`
		var bad payload
		srv.Query(t, set, map[string]any{"id": id, "env": "windows-95"}, &bad)
		if bad.SetBootenv.Machine != nil || len(bad.SetBootenv.Errors) != 1 || bad.SetBootenv.Errors[0].Code != "NOT_FOUND" || bad.SetBootenv.Errors[0].Field != "bootenv" {
			t.Fatalf("unknown bootenv: %+v", bad.SetBootenv)
		}
		if m, _ := st.Client.Machine.Get(ctx, id); m.Bootenv != "discovery" {
			t.Fatalf("a refused setBootenv changed the machine to %s", m.Bootenv)
		}
		var ok payload
		srv.Query(t, set, map[string]any{"id": id, "env": "local"}, &ok)
		if ok.SetBootenv.Machine == nil || ok.SetBootenv.Machine.Bootenv != "local" || len(ok.SetBootenv.Errors) != 0 {
			t.Fatalf("setBootenv local: %+v", ok.SetBootenv)
		}

		var prev struct {
			BootScript struct {
				Bootenv, Script string
				Error           *string
			}
		}
		srv.Query(t, `query($id: ID!) { bootScript(machineID: $id) { bootenv script error } }`, map[string]any{"id": id}, &prev)
		want := "#!ipxe\necho Prybar: web01.a01.ams1.example boots from its local disk\niseq ${platform} efi && exit ||\nsanboot --no-describe --drive 0x80 || exit\n"
		if prev.BootScript.Bootenv != "local" || prev.BootScript.Script != want || prev.BootScript.Error != nil {
			t.Fatalf("bootScript = %+v", prev.BootScript)
		}
	})
}
