package main

// The decisions cache and the headers of a verdict: the same semantics as the Python
// package's tenantwatch_edge/decisions.py and headers.py (see their docstrings; the
// conformance test feeds both the same records and compares every answer).
//
// Only refused keys are kept. A partition's "now" is the newest decision time applied from
// that partition of the decisions topic; a refusal whose reset_ts is at or before it answers
// "allowed". An "allowed" decision with remaining 0 and a reset_ts (reason
// "exhausted:<window>": the request that used the quota up) is kept as a throttle ending at
// reset_ts. No clock is read here.

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	stateAllowed = iota
	stateThrottled
	stateBanned
	stateBlocked
)

var stateNames = []string{"allowed", "throttled", "banned", "blocked"}

var windowSeconds = map[string]int{"minute": 60, "hour": 3600, "day": 86400}

const maxText = 256 // tenant ids, IPs and reasons are far shorter in a valid record

// Verdict is what the edge answers for one request.
type Verdict struct {
	State  int
	Reason string
	Limit  *int64  // quota of the binding window (refused) or nil
	Window string  // "minute", "hour", "day", "ban" or ""
	ResetS float64 // seconds until the refusal ends, in event time; NaN: not known
	Shadow bool
	Policy string // RateLimit-Policy field value ("" unknown)
}

var allow = Verdict{Reason: "ok", ResetS: math.NaN()}

// Enforced: the request must be refused here.
func (v Verdict) Enforced() bool { return v.State != stateAllowed && !v.Shadow }

type entry struct {
	state     int
	reason    string
	limit     *int64
	window    string
	resetTS   float64 // NaN: no end announced
	shadow    bool
	partition int32
}

type key struct{ tenant, ip string }

// Cache holds the current decisions; safe for one writer and many readers.
type Cache struct {
	mu       sync.RWMutex
	entries  map[key]entry
	allowed  map[string]Verdict // tenant → its "allowed" verdict (policy header, shadow)
	clocks   map[int32]float64
	applied  int64
	rejected int64
}

func NewCache() *Cache {
	return &Cache{entries: map[key]entry{}, allowed: map[string]Verdict{}, clocks: map[int32]float64{}}
}

func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// Lookup is the verdict for ip (canonical text) at tenant, now in event time.
func (c *Cache) Lookup(tenant, ip string) Verdict {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.entries[key{tenant, ip}]
	base, known := c.allowed[tenant]
	if !known {
		base = allow
	}
	if !ok {
		return base
	}
	if math.IsNaN(e.resetTS) {
		return Verdict{e.state, e.reason, e.limit, e.window, math.NaN(), e.shadow, base.Policy}
	}
	clock, seen := c.clocks[e.partition]
	if !seen {
		clock = math.Inf(-1)
	}
	left := e.resetTS - clock
	if left <= 0 {
		return base
	}
	return Verdict{e.state, e.reason, e.limit, e.window, left, e.shadow, base.Policy}
}

// Now is the newest decision time applied from any partition (-Inf before the first).
func (c *Cache) Now() float64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	now := math.Inf(-1)
	for _, t := range c.clocks {
		now = math.Max(now, t)
	}
	return now
}

// -- reading records (input, never trusted) -------------------------------------------------

func object(value []byte) (map[string]json.RawMessage, error) {
	var d map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(value))
	if err := dec.Decode(&d); err != nil || d == nil {
		return nil, errors.New("not a JSON object")
	}
	if dec.More() {
		return nil, errors.New("trailing data")
	}
	return d, nil
}

func isNull(raw json.RawMessage) bool { return raw == nil || string(raw) == "null" }

func text(raw json.RawMessage) (string, error) {
	var s string
	if isNull(raw) || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", errors.New("not a string")
	}
	return s, shortText(s)
}

func shortText(s string) error {
	if n := utf8.RuneCountInString(s); n == 0 || n > maxText {
		return errors.New("not a short string")
	}
	return nil
}

// count: null, or a non-negative integer literal (5.0 is a float, not a count, as in Python).
func count(raw json.RawMessage) (*int64, error) {
	if isNull(raw) {
		return nil, nil
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n < 0 {
		return nil, errors.New("not a count")
	}
	return &n, nil
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00"}

// epoch reads RFC 3339 text with a UTC offset into seconds (microseconds, as Python's datetime).
func epoch(raw json.RawMessage) (float64, error) {
	var s string
	if isNull(raw) || raw[0] != '"' || json.Unmarshal(raw, &s) != nil || len(s) > 40 {
		return 0, errors.New("timestamp is not RFC 3339 text")
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return float64(t.UnixMicro()) / 1e6, nil
		}
	}
	return 0, errors.New("timestamp is not RFC 3339 text with an offset")
}

type decision struct {
	tenant, ip, reason string
	state              int
	ts, resetTS        float64
	limit, remaining   *int64
	shadow             bool
}

func parseDecision(value []byte) (decision, error) {
	var d decision
	o, err := object(value)
	if err != nil {
		return d, err
	}
	if d.tenant, err = text(o["tenant_id"]); err != nil {
		return d, err
	}
	if d.ip, err = text(o["ip"]); err != nil {
		return d, err
	}
	var name string
	if isNull(o["state"]) || json.Unmarshal(o["state"], &name) != nil {
		return d, errors.New("unknown state")
	}
	d.state = -1
	for i, s := range stateNames {
		if s == name {
			d.state = i
		}
	}
	if d.state < 0 {
		return d, errors.New("unknown state")
	}
	if d.reason, err = text(o["reason"]); err != nil {
		return d, err
	}
	if d.ts, err = epoch(o["ts"]); err != nil {
		return d, err
	}
	d.resetTS = math.NaN()
	if !isNull(o["reset_ts"]) {
		if d.resetTS, err = epoch(o["reset_ts"]); err != nil {
			return d, err
		}
	}
	if d.limit, err = count(o["limit"]); err != nil {
		return d, err
	}
	if d.remaining, err = count(o["remaining"]); err != nil {
		return d, err
	}
	if raw, ok := o["shadow"]; ok {
		switch string(raw) {
		case "true":
			d.shadow = true
		case "false":
		default:
			return d, errors.New("shadow is not a boolean")
		}
	}
	return d, nil
}

// ApplyDecision applies one record of the decisions topic; false (and counted) if it is not one.
//
// The record is parsed before the write lock is taken: the lock is held for the map update only,
// so a burst of decisions does not hold up the checks' lookups for a JSON parse each.
func (c *Cache) ApplyDecision(k, value []byte, partition int32) bool {
	if value == nil { // a tombstone: the key has no decision any more
		c.mu.Lock()
		defer c.mu.Unlock()
		if !utf8.Valid(k) {
			c.rejected++
			return false
		}
		tenant, ip, _ := strings.Cut(string(k), ":")
		delete(c.entries, key{tenant, ip})
		c.applied++
		return true
	}
	d, err := parseDecision(value)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.rejected++
		return false
	}
	if clock, ok := c.clocks[partition]; !ok || d.ts > clock {
		c.clocks[partition] = d.ts
	}
	state := d.state
	if state == stateAllowed && d.remaining != nil && *d.remaining == 0 && !math.IsNaN(d.resetTS) {
		state = stateThrottled // the quota is used up: refuse the next request
	}
	k2 := key{d.tenant, d.ip}
	if state == stateAllowed {
		delete(c.entries, k2)
	} else {
		// Only names the edge knows reach a header: a record is input, not header text.
		name := strings.TrimPrefix(strings.TrimPrefix(d.reason, "limit:"), "exhausted:")
		window := ""
		if _, ok := windowSeconds[name]; ok {
			window = name
		} else if state == stateBanned {
			window = "ban"
		}
		c.entries[k2] = entry{state, d.reason, d.limit, window, d.resetTS, d.shadow, partition}
	}
	c.applied++
	return true
}

// ApplyPolicy applies one record of ratelimit-policies (a tenant's limits); false if malformed.
func (c *Cache) ApplyPolicy(k, value []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !utf8.Valid(k) {
		c.rejected++
		return false
	}
	tenant := string(k)
	if value == nil {
		delete(c.allowed, tenant)
		return true
	}
	o, err := object(value)
	if err == nil {
		if raw, ok := o["tenant_id"]; ok {
			tenant, err = text(raw)
		} else {
			err = shortText(tenant)
		}
	}
	var limits [3]*int64
	for i, w := range []string{"minute", "hour", "day"} {
		if err == nil {
			limits[i], err = count(o["per_"+w])
		}
	}
	if err != nil {
		c.rejected++
		return false
	}
	header := ""
	if string(o["enabled"]) != "false" {
		header = policyHeader(limits)
	}
	v := allow
	v.Policy, v.Shadow = header, string(o["shadow"]) == "true"
	c.allowed[tenant] = v
	return true
}

func policyHeader(limits [3]*int64) string {
	var parts []string
	for i, w := range []string{"minute", "hour", "day"} {
		if limits[i] != nil {
			parts = append(parts, "\""+w+"\";q="+strconv.FormatInt(*limits[i], 10)+";w="+strconv.Itoa(windowSeconds[w]))
		}
	}
	return strings.Join(parts, ", ")
}

// Headers are the rate-limit headers of a response under v (draft-ietf-httpapi-ratelimit-headers-09).
func Headers(v Verdict) [][2]string {
	var out [][2]string
	if v.Policy != "" {
		out = append(out, [2]string{"ratelimit-policy", v.Policy})
	}
	if v.State != stateBlocked && v.State != stateAllowed {
		w := v.Window
		if w == "" {
			w = "limit"
		}
		item := "\"" + w + "\";r=0"
		if !math.IsNaN(v.ResetS) {
			secs := strconv.FormatInt(int64(math.Max(1, math.Ceil(v.ResetS))), 10)
			item += ";t=" + secs
			if !v.Shadow {
				out = append(out, [2]string{"retry-after", secs})
			}
		}
		out = append(out, [2]string{"ratelimit", item})
	}
	return out
}

// Status is 429 for a throttled or banned key, 403 for a blacklisted one, 200 when served.
func Status(v Verdict) int {
	switch {
	case !v.Enforced():
		return 200
	case v.State == stateBlocked:
		return 403
	default:
		return 429
	}
}
