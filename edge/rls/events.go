package main

// Request events as the pipeline's strict contract wants them (schemas.events.RequestEvent),
// built exactly as tenantwatch_edge/events.py builds them; the conformance test validates what
// this builds with the pipeline's own strict decoder. What cannot be made valid is not built.

import (
	"encoding/json"
	"regexp"
	"strconv"
	"time"
)

var methods = map[string]bool{"GET": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "HEAD": true,
	"OPTIONS": true}

var tenantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

const maxPath = 2048

func validTenant(t string) bool { return tenantRE.MatchString(t) }

// buildEvent is the JSON of one request event (id node.seq) served with status (latency and
// size are not known to a rate-limit service: 0), or nil if it cannot satisfy the contract.
func buildEvent(node string, seq int64, ts time.Time, tenant, ip, method, path string, status int) []byte {
	b, ok := appendEvent(nil, node, seq, ts, tenant, ip, method, path, status)
	if !ok {
		return nil
	}
	return b
}

// appendEvent appends the event's JSON to dst (the sink packs a batch into one buffer without an
// allocation per event); false, and dst unchanged, if the event cannot satisfy the contract.
func appendEvent(dst []byte, node string, seq int64, ts time.Time, tenant, ip, method, path string,
	status int) ([]byte, bool) {
	if !methods[method] || !validTenant(tenant) || status < 100 || status > 599 {
		return dst, false
	}
	if path == "" {
		path = "/"
	} else if len(path) > maxPath { // bytes ≥ runes: only then can there be too many runes
		if r := []rune(path); len(r) > maxPath {
			path = string(r[:maxPath])
		}
	}
	b := append(dst, `{"kind":"request","event_id":"`...)
	b = append(b, node...)
	b = append(b, '.')
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `","ts":"`...)
	b = ts.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000+00:00")
	b = append(b, `","tenant_id":"`...)
	b = append(b, tenant...)
	b = append(b, `","ip":`...)
	b = appendJSONString(b, ip) // canonical, but a scope id (fe80::1%x) is free text
	b = append(b, `,"method":"`...)
	b = append(b, method...)
	b = append(b, `","path":`...)
	b = appendJSONString(b, path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"latency_ms":0.0,"bytes":0}`...)
	return b, true
}

// appendJSONString appends s as encoding/json writes it: as is between quotes when every byte is
// printable ASCII that json escapes in no way (the usual address and path), else json.Marshal's.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
