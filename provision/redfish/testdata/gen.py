#!/usr/bin/env python3
"""Writes the Redfish mock-up variants in this folder.

They are modelled on the DMTF public mock-ups (../../../../shared/redfish-mockups) but cut down to
the shapes those lack, which real BMCs have:

  smartnic-oddities  one system whose drives lack Id/Name, whose NIC MACs appear only under
                     NetworkInterfaces / Chassis NetworkAdapters NetworkDeviceFunctions, and whose
                     interfaces and ports often leave LinkStatus out.
  blade-chassis      one BMC (a chassis manager) that manages three blade systems.

Run it from this folder (python3 gen.py) after editing; the output is committed.
"""
import json, os, shutil

COPY = "Modelled on DMTF Redfish mock-ups (Copyright 2014-2025 DMTF, http://www.dmtf.org/about/policies/copyright); written for Prybar's tests."

def ref(p): return {"@odata.id": p}
def col(typ, p, members):
    return {"@odata.type": "#%sCollection.%sCollection" % (typ, typ), "@odata.id": p, "Name": typ + " Collection",
            "Members": [ref(m) for m in members], "Members@odata.count": len(members)}

def write(root, tree):
    if os.path.isdir(root):
        shutil.rmtree(root)
    for p, res in tree.items():
        rel = p[len("/redfish/v1"):].strip("/")
        d = os.path.join(root, rel)
        os.makedirs(d, exist_ok=True)
        res.setdefault("@odata.id", p)
        res["@Redfish.Copyright"] = COPY
        with open(os.path.join(d, "index.json"), "w") as f:
            json.dump(res, f, indent=4, sort_keys=True)
            f.write("\n")

def service_root(systems_members):
    return {
        "/redfish/v1": {"@odata.type": "#ServiceRoot.v1_16_0.ServiceRoot", "Id": "RootService", "Name": "Root Service",
                        "RedfishVersion": "1.17.0", "Systems": ref("/redfish/v1/Systems"), "Chassis": ref("/redfish/v1/Chassis"),
                        "Managers": ref("/redfish/v1/Managers"), "SessionService": ref("/redfish/v1/SessionService"),
                        "Links": {"Sessions": ref("/redfish/v1/SessionService/Sessions")}},
        "/redfish/v1/SessionService": {"@odata.type": "#SessionService.v1_1_8.SessionService", "Id": "SessionService",
                                       "Name": "Session Service", "ServiceEnabled": True, "SessionTimeout": 600,
                                       "Sessions": ref("/redfish/v1/SessionService/Sessions")},
        "/redfish/v1/Systems": col("ComputerSystem", "/redfish/v1/Systems", systems_members),
    }

def system(p, sid, name, serial, power, chassis, manager, extra=None):
    s = {"@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem", "Id": sid, "Name": name, "SystemType": "Physical",
         "Manufacturer": "Contoso", "Model": "3500", "SerialNumber": serial,
         "UUID": "38947555-7742-3448-3784-8234%08d" % sum(map(ord, sid)),
         "PowerState": power, "Status": {"State": "Enabled", "Health": "OK"},
         "Boot": {"BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideTarget": "None",
                  "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Pxe", "Cd", "Hdd", "BiosSetup"],
                  "BootSourceOverrideMode": "UEFI"},
         "ProcessorSummary": {"Count": 1, "Model": "Multi-Core Intel(R) Xeon(R) processor 7xxx Series"},
         "MemorySummary": {"TotalSystemMemoryGiB": 64},
         "Actions": {"#ComputerSystem.Reset": {"target": p + "/Actions/ComputerSystem.Reset",
                     "ResetType@Redfish.AllowableValues": ["On", "ForceOff", "GracefulShutdown", "ForceRestart", "PowerCycle"]}},
         "Links": {"Chassis": [ref(chassis)], "ManagedBy": [ref(manager)]}}
    s.update(extra or {})
    return s

def manager(p):
    return {"@odata.type": "#Manager.v1_17_0.Manager", "Id": p.rsplit("/", 1)[1], "Name": "Manager", "ManagerType": "BMC",
            "Actions": {"#Manager.Reset": {"target": p + "/Actions/Manager.Reset",
                        "ResetType@Redfish.AllowableValues": ["ForceRestart", "GracefulRestart"]}}}

# --- smartnic-oddities -------------------------------------------------------------------------
S = "/redfish/v1/Systems/1"
C = "/redfish/v1/Chassis/1"
M = "/redfish/v1/Managers/BMC"
NA1, NA2 = C + "/NetworkAdapters/NA1", C + "/NetworkAdapters/NA2"
t = service_root([S])
t.update({
    S: system(S, "1", "SmartNIC host", "SN-ODD-0001", "On", C, M, {
        "EthernetInterfaces": ref(S + "/EthernetInterfaces"),
        "NetworkInterfaces": ref(S + "/NetworkInterfaces"),
        "Storage": ref(S + "/Storage")}),
    S + "/EthernetInterfaces": col("EthernetInterface", S + "/EthernetInterfaces", [S + "/EthernetInterfaces/eth0"]),
    # No LinkStatus: the BMC does not know (no transceiver telemetry); unknown, not down.
    S + "/EthernetInterfaces/eth0": {"@odata.type": "#EthernetInterface.v1_12_4.EthernetInterface", "Id": "eth0",
                                     "Name": "Ethernet Interface", "EthernetInterfaceType": "Physical",
                                     "MACAddress": "52:54:00:0D:D0:01", "SpeedMbps": 25000,
                                     "Status": {"State": "Enabled", "Health": "OK"}},
    S + "/NetworkInterfaces": col("NetworkInterface", S + "/NetworkInterfaces", [S + "/NetworkInterfaces/NA1"]),
    S + "/NetworkInterfaces/NA1": {"@odata.type": "#NetworkInterface.v1_2_3.NetworkInterface", "Id": "NA1",
                                   "Name": "Network Device View", "Links": {"NetworkAdapter": ref(NA1)},
                                   "Status": {"State": "Enabled", "Health": "OK"}},
    S + "/Storage": col("Storage", S + "/Storage", [S + "/Storage/1"]),
    S + "/Storage/1": {"@odata.type": "#Storage.v1_15_0.Storage", "Id": "1", "Name": "Local Storage Controller",
                       "Drives": [ref(C + "/Drives/0"), ref(C + "/Drives/1")]},
    C: {"@odata.type": "#Chassis.v1_23_0.Chassis", "Id": "1", "Name": "Computer System Chassis", "ChassisType": "RackMount",
        "Drives": ref(C + "/Drives"), "NetworkAdapters": ref(C + "/NetworkAdapters"),
        "Links": {"ComputerSystems": [ref(S)], "ManagedBy": [ref(M)]}},
    "/redfish/v1/Chassis": col("Chassis", "/redfish/v1/Chassis", [C]),
    C + "/Drives": col("Drive", C + "/Drives", [C + "/Drives/0", C + "/Drives/1"]),
    # Neither Id nor Name: named from its path.
    C + "/Drives/0": {"@odata.type": "#Drive.v1_17_0.Drive", "Model": "Contoso NVMe 3.2TB", "SerialNumber": "NV-0000-1",
                      "CapacityBytes": 3200631791616, "Protocol": "NVMe", "MediaType": "SSD",
                      "Status": {"State": "Enabled", "Health": "OK"}},
    # Id but no Name.
    C + "/Drives/1": {"@odata.type": "#Drive.v1_17_0.Drive", "Id": "Disk.Bay.1", "Model": "Contoso 4TB HDD",
                      "SerialNumber": "HD-0000-2", "CapacityBytes": 4000787030016, "Protocol": "SATA", "MediaType": "HDD",
                      "Status": {"State": "Enabled", "Health": "OK"}},
    C + "/NetworkAdapters": col("NetworkAdapter", C + "/NetworkAdapters", [NA1, NA2]),
    NA1: {"@odata.type": "#NetworkAdapter.v1_9_0.NetworkAdapter", "Id": "NA1", "Name": "SmartNIC", "Manufacturer": "Contoso",
          "Model": "DPU-200", "NetworkDeviceFunctions": ref(NA1 + "/NetworkDeviceFunctions"), "Ports": ref(NA1 + "/Ports")},
    NA1 + "/NetworkDeviceFunctions": col("NetworkDeviceFunction", NA1 + "/NetworkDeviceFunctions",
                                         [NA1 + "/NetworkDeviceFunctions/1", NA1 + "/NetworkDeviceFunctions/2", NA1 + "/NetworkDeviceFunctions/3"]),
    NA1 + "/NetworkDeviceFunctions/1": {"@odata.type": "#NetworkDeviceFunction.v1_9_0.NetworkDeviceFunction", "Id": "1",
                                        "Name": "SmartNIC port 1", "NetDevFuncType": "Ethernet",
                                        "Ethernet": {"MACAddress": "B8:CE:F6:00:00:10", "MTUSize": 1500},
                                        "Links": {"PhysicalPortAssignment": ref(NA1 + "/Ports/1")},
                                        "Status": {"State": "Enabled", "Health": "OK"}},
    NA1 + "/NetworkDeviceFunctions/2": {"@odata.type": "#NetworkDeviceFunction.v1_9_0.NetworkDeviceFunction", "Id": "2",
                                        "Name": "SmartNIC port 2", "NetDevFuncType": "Ethernet",
                                        "Ethernet": {"PermanentMACAddress": "b8-ce-f6-00-00-11"},
                                        "AssignablePhysicalPorts": [ref(NA1 + "/Ports/2")],
                                        "Status": {"State": "Enabled", "Health": "OK"}},
    # A Fibre Channel function has no Ethernet MAC and is not a NIC.
    NA1 + "/NetworkDeviceFunctions/3": {"@odata.type": "#NetworkDeviceFunction.v1_9_0.NetworkDeviceFunction", "Id": "3",
                                        "Name": "FC function", "NetDevFuncType": "FibreChannel",
                                        "FibreChannel": {"PermanentWWPN": "10:00:B8:CE:F6:00:00:12"},
                                        "Status": {"State": "Enabled", "Health": "OK"}},
    NA1 + "/Ports": col("Port", NA1 + "/Ports", [NA1 + "/Ports/1", NA1 + "/Ports/2"]),
    NA1 + "/Ports/1": {"@odata.type": "#Port.v1_11_0.Port", "Id": "1", "Name": "Port 1", "LinkStatus": "LinkUp",
                       "CurrentSpeedGbps": 100},
    # No LinkStatus reported for this port.
    NA1 + "/Ports/2": {"@odata.type": "#Port.v1_11_0.Port", "Id": "2", "Name": "Port 2", "CurrentSpeedGbps": 100},
    # Reached only from the chassis; old NetworkPort vocabulary ("Down", CurrentLinkSpeedMbps).
    NA2: {"@odata.type": "#NetworkAdapter.v1_9_0.NetworkAdapter", "Id": "NA2", "Name": "OCP NIC",
          "NetworkDeviceFunctions": ref(NA2 + "/NetworkDeviceFunctions"), "NetworkPorts": ref(NA2 + "/NetworkPorts")},
    NA2 + "/NetworkDeviceFunctions": col("NetworkDeviceFunction", NA2 + "/NetworkDeviceFunctions", [NA2 + "/NetworkDeviceFunctions/1"]),
    NA2 + "/NetworkDeviceFunctions/1": {"@odata.type": "#NetworkDeviceFunction.v1_3_3.NetworkDeviceFunction",
                                        "NetDevFuncType": "Ethernet", "Ethernet": {"MACAddress": "B8:CE:F6:00:00:20"},
                                        "Links": {"PhysicalPortAssignment": ref(NA2 + "/NetworkPorts/1")},
                                        "Status": {"State": "Enabled", "Health": "OK"}},
    NA2 + "/NetworkPorts": col("NetworkPort", NA2 + "/NetworkPorts", [NA2 + "/NetworkPorts/1"]),
    NA2 + "/NetworkPorts/1": {"@odata.type": "#NetworkPort.v1_4_1.NetworkPort", "Id": "1", "Name": "Port 1",
                              "LinkStatus": "Down", "CurrentLinkSpeedMbps": 10000},
    "/redfish/v1/Managers": col("Manager", "/redfish/v1/Managers", [M]),
    M: manager(M),
})
write("mockups/smartnic-oddities", t)

# --- blade-chassis -----------------------------------------------------------------------------
E = "/redfish/v1/Chassis/Enclosure"
CMC = "/redfish/v1/Managers/CMC"
blades = [("Blade1", "Blade 1", "SN-BLADE-0001", "On"), ("Blade2", "Blade 2", "SN-BLADE-0002", "Off"),
          ("Blade3", "Blade 3", "SN-BLADE-0003", "On")]
t = service_root(["/redfish/v1/Systems/" + b[0] for b in blades])
chassis = [E]
for sid, name, serial, power in blades:
    p = "/redfish/v1/Systems/" + sid
    bc = "/redfish/v1/Chassis/" + sid
    chassis.append(bc)
    t[p] = system(p, sid, name, serial, power, bc, CMC, {"HostName": sid.lower() + ".example"})
    t[bc] = {"@odata.type": "#Chassis.v1_23_0.Chassis", "Id": sid, "Name": name + " chassis", "ChassisType": "Blade",
             "Links": {"ComputerSystems": [ref(p)], "ContainedBy": ref(E), "ManagedBy": [ref(CMC)]}}
t[E] = {"@odata.type": "#Chassis.v1_23_0.Chassis", "Id": "Enclosure", "Name": "Blade enclosure", "ChassisType": "Enclosure",
        "Links": {"Contains": [ref(c) for c in chassis[1:]], "ManagedBy": [ref(CMC)]}}
t["/redfish/v1/Chassis"] = col("Chassis", "/redfish/v1/Chassis", chassis)
t["/redfish/v1/Managers"] = col("Manager", "/redfish/v1/Managers", [CMC])
t[CMC] = manager(CMC)
write("mockups/blade-chassis", t)
