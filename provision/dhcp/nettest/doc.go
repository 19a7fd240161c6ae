// Package nettest holds the DHCP server's real-client tests (busybox udhcpc in network namespaces
// the tests create); it has no non-test code.
package nettest
