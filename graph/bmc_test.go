package graph_test

import (
	"fmt"
	"testing"

	"github.com/prybar/prybar/internal/apitest"
	"github.com/prybar/prybar/provision/redfish/redfishsim"
	"github.com/prybar/prybar/provision/redfish/redfishsim/redfishsimtest"
)

// Issue 7, point 4: a BMC's system id is settable through the API, and bmcSystems lists what a
// multi-system BMC (a blade chassis manager here) manages so an operator can pick.
func TestBMCSystemsOfABladeChassis(t *testing.T) {
	sim := redfishsimtest.StartDir(t, "../provision/redfish/testdata/mockups/blade-chassis", redfishsim.Config{})
	st := apitest.Open(t, apitest.DSN(t, apitest.SQLite))
	srv := apitest.Serve(t, st)

	var m struct {
		CreateMachine struct{ Machine struct{ ID string } }
	}
	srv.Query(t, `mutation { createMachine(input: {name: "blade2.test.example"}) { machine { id } errors { message } } }`, nil, &m)
	var b struct {
		CreateBMC struct {
			Bmc    struct{ ID, SystemID string }
			Errors []struct{ Field, Code, Message string }
		} `json:"createBMC"`
	}
	srv.Query(t, `mutation($m: ID!, $a: String!, $p: Int!, $u: String!, $pw: String!) {
		createBMC(input: {protocol: REDFISH, address: $a, port: $p, scheme: "http", username: $u, password: $pw, machineID: $m, systemID: "Blade2"}) {
			bmc { id systemID } errors { field code message } } }`,
		map[string]any{"m": m.CreateMachine.Machine.ID, "a": sim.Host, "p": sim.Port, "u": redfishsimtest.User, "pw": redfishsimtest.Password}, &b)
	if len(b.CreateBMC.Errors) > 0 || b.CreateBMC.Bmc.SystemID != "Blade2" {
		t.Fatalf("createBMC = %+v", b.CreateBMC)
	}
	type system struct {
		ID, Path, Name, SystemType, SerialNumber string
		PowerState                               *string
		Selected                                 bool
	}
	var got struct {
		BmcSystems struct {
			Systems []system
			Errors  []struct{ Field, Code, Message string }
		}
	}
	const q = `query($id: ID!) { bmcSystems(bmcID: $id) { systems { id path name systemType serialNumber powerState selected } errors { field code message } } }`
	srv.Query(t, q, map[string]any{"id": b.CreateBMC.Bmc.ID}, &got)
	var summary []string
	for _, s := range got.BmcSystems.Systems {
		p := "null"
		if s.PowerState != nil {
			p = *s.PowerState
		}
		summary = append(summary, fmt.Sprintf("%s|%s|%s|%s|%s|%t", s.ID, s.Name, s.SerialNumber, p, s.SystemType, s.Selected))
	}
	want := []string{
		"Blade1|Blade 1|SN-BLADE-0001|ON|Physical|false",
		"Blade2|Blade 2|SN-BLADE-0002|OFF|Physical|true",
		"Blade3|Blade 3|SN-BLADE-0003|ON|Physical|false",
	}
	if fmt.Sprint(summary) != fmt.Sprint(want) || len(got.BmcSystems.Errors) != 0 {
		t.Fatalf("bmcSystems = %v %+v\nwant %v", summary, got.BmcSystems.Errors, want)
	}

	// The system id can be changed and cleared.
	var u struct {
		UpdateBMC struct{ Bmc struct{ SystemID *string } } `json:"updateBMC"`
	}
	srv.Query(t, `mutation($id: ID!) { updateBMC(id: $id, input: {clearSystemID: true}) { bmc { systemID } errors { message } } }`,
		map[string]any{"id": b.CreateBMC.Bmc.ID}, &u)
	if u.UpdateBMC.Bmc.SystemID != nil && *u.UpdateBMC.Bmc.SystemID != "" {
		t.Fatalf("systemID after clear = %q", *u.UpdateBMC.Bmc.SystemID)
	}
	srv.Query(t, q, map[string]any{"id": b.CreateBMC.Bmc.ID}, &got)
	for _, s := range got.BmcSystems.Systems {
		if s.Selected {
			t.Errorf("system %s selected although the BMC has no systemID and manages several", s.ID)
		}
	}

	// Errors are typed: a missing BMC, an IPMI BMC, a BMC that does not answer.
	srv.Query(t, q, map[string]any{"id": "999999"}, &got)
	if len(got.BmcSystems.Errors) != 1 || got.BmcSystems.Errors[0].Code != "NOT_FOUND" || got.BmcSystems.Errors[0].Field != "bmcID" {
		t.Errorf("missing BMC: %+v", got.BmcSystems.Errors)
	}
	var m2 struct {
		CreateMachine struct{ Machine struct{ ID string } }
	}
	srv.Query(t, `mutation { createMachine(input: {name: "ipmi.test.example"}) { machine { id } } }`, nil, &m2)
	srv.Query(t, `mutation($m: ID!) { createBMC(input: {protocol: IPMI, address: "192.0.2.1", machineID: $m}) { bmc { id } } }`,
		map[string]any{"m": m2.CreateMachine.Machine.ID}, &b)
	srv.Query(t, q, map[string]any{"id": b.CreateBMC.Bmc.ID}, &got)
	if len(got.BmcSystems.Errors) != 1 || got.BmcSystems.Errors[0].Code != "INVALID" {
		t.Errorf("IPMI BMC: %+v", got.BmcSystems.Errors)
	}
	t.Logf("IPMI: %s", got.BmcSystems.Errors[0].Message)
}
