package main

import (
	"net/netip"
	"strings"
	"unicode"
)

// canonicalIP is the canonical text of an address (IPv6 compressed, ::ffff:a.b.c.d as a.b.c.d),
// or "" if value is not one: the form the pipeline keys its decisions by (Python's
// tenantwatch_edge.client_ip.canonical_ip, which the conformance test compares it with).
func canonicalIP(value string) string {
	s := strings.TrimFunc(value, unicode.IsSpace)
	if len(s) > 45 {
		return ""
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return ""
	}
	if addr.Is4In6() {
		return addr.Unmap().String()
	}
	return addr.String()
}
