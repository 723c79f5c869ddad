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

// buildEvent is the JSON of one request event served with status (latency and size are not
// known to a rate-limit service: 0), or nil if it cannot satisfy the contract.
func buildEvent(eventID string, ts time.Time, tenant, ip, method, path string, status int) []byte {
	if !methods[method] || !validTenant(tenant) || status < 100 || status > 599 {
		return nil
	}
	if path == "" {
		path = "/"
	} else if r := []rune(path); len(r) > maxPath {
		path = string(r[:maxPath])
	}
	p, _ := json.Marshal(path)
	q, _ := json.Marshal(ip) // canonical, but a scope id (fe80::1%x) is free text
	b := make([]byte, 0, 200+len(p))
	b = append(b, `{"kind":"request","event_id":"`...)
	b = append(b, eventID...)
	b = append(b, `","ts":"`...)
	b = ts.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000+00:00")
	b = append(b, `","tenant_id":"`...)
	b = append(b, tenant...)
	b = append(b, `","ip":`...)
	b = append(b, q...)
	b = append(b, `,"method":"`...)
	b = append(b, method...)
	b = append(b, `","path":`...)
	b = append(b, p...)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"latency_ms":0.0,"bytes":0}`...)
	return b
}
