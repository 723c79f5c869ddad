package main

// -conform: the cache and the service's answers without Kafka or gRPC, one JSON line in, one
// out, so a test can feed the Python edge and this service the same records and compare:
//
//	{"op":"decision","key":B64|null,"value":B64|null,"partition":N} → {"ok":bool}
//	{"op":"policy","key":B64|null,"value":B64|null}                → {"ok":bool}
//	{"op":"check","entries":[[K,V],...],"hits":N}                   → the response and its events

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"math"
	"os"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

type conformOp struct {
	Op        string      `json:"op"`
	Key       *string     `json:"key"`
	Value     *string     `json:"value"`
	Partition int32       `json:"partition"`
	Entries   [][2]string `json:"entries"`
	Hits      uint32      `json:"hits"`
}

func b64(s *string) []byte {
	if s == nil {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(*s)
	if err != nil || b == nil {
		return []byte{}
	}
	return b
}

func runConform(tenantKey, addressKey string) {
	cache := NewCache()
	var events []json.RawMessage
	svc := &Service{cache: cache, live: func() bool { return true }, tenantKey: tenantKey, addressKey: addressKey,
		publish: func(ts time.Time, tenant, ip, method, path string, status int) {
			if ev := buildEvent("conform", 1, ts, tenant, ip, method, path, status); ev != nil {
				events = append(events, ev)
			}
		}}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var op conformOp
		if err := json.Unmarshal(in.Bytes(), &op); err != nil {
			fail(2, "conform: %v", err)
		}
		switch op.Op {
		case "decision":
			_ = out.Encode(map[string]bool{"ok": cache.ApplyDecision(b64(op.Key), b64(op.Value), op.Partition)})
		case "policy":
			_ = out.Encode(map[string]bool{"ok": cache.ApplyPolicy(b64(op.Key), b64(op.Value))})
		case "check":
			entries := make([]*ratelimitv3.RateLimitDescriptor_Entry, len(op.Entries))
			for i, e := range op.Entries {
				entries[i] = &ratelimitv3.RateLimitDescriptor_Entry{Key: e[0], Value: e[1]}
			}
			req := &rlsv3.RateLimitRequest{Domain: "conform", HitsAddend: op.Hits,
				Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: entries}}}
			events = events[:0]
			resp := svc.Decide(req, time.Unix(1_780_000_000, 123456000))
			headers := [][2]string{}
			for _, h := range resp.GetResponseHeadersToAdd() {
				headers = append(headers, [2]string{h.GetKey(), h.GetValue()})
			}
			_ = out.Encode(map[string]any{"code": resp.GetOverallCode().String(), "headers": headers,
				"events": append([]json.RawMessage{}, events...)})
		case "ip":
			var v string
			if op.Value != nil {
				v = *op.Value
			}
			_ = out.Encode(map[string]string{"ip": canonicalIP(v)})
		case "lookup":
			var tenant, ip string
			if len(op.Entries) == 1 {
				tenant, ip = op.Entries[0][0], op.Entries[0][1]
			}
			v := cache.Lookup(tenant, ip)
			reset := any(nil)
			if !math.IsNaN(v.ResetS) {
				reset = v.ResetS
			}
			_ = out.Encode(map[string]any{"state": stateNames[v.State], "reason": v.Reason, "limit": v.Limit,
				"window": v.Window, "reset_s": reset, "shadow": v.Shadow, "policy": v.Policy})
		default:
			fail(2, "conform: unknown op %q", op.Op)
		}
	}
}
