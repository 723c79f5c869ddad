package main

// Envoy's global rate-limit service (envoy.service.ratelimit.v3.RateLimitService) over the cache.
//
// Descriptor entries read (keys configurable): the tenant (e.g. a request_headers action on
// x-tenant-id), the client address (Envoy's remote_address action), and optional "method" and
// "path" for the request event. OVER_LIMIT for a key throttled, banned or blacklisted (Envoy
// answers it with the filter's rate_limited_status: the status cannot vary per answer), OK
// otherwise; the rate-limit headers go back in response_headers_to_add either way. Each check
// is published as a request event with the edge's own answer as its status (200 when passed
// on, latency and size 0). A request without a tenant or a valid address is answered OK and
// not published. While the feed is not live, every check is OK (fallback_allowed).

import (
	"context"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

const maxHits = 100 // request events published for one check (hits_addend), at most

type Service struct {
	rlsv3.UnimplementedRateLimitServiceServer
	cache                 *Cache
	live                  func() bool
	publish               func(ts time.Time, tenant, ip, method, path string, status int)
	tenantKey, addressKey string
	checks, overLimit     atomic.Int64
	unattributed          atomic.Int64
	fallbackAllowed       atomic.Int64
}

// Check is the verdict for a request of ip (canonical) to tenant: the cache's, or "allowed"
// (counted) while the feed is not live.
func (s *Service) Check(tenant, ip string) Verdict {
	if !s.live() {
		s.fallbackAllowed.Add(1)
		return allow
	}
	return s.cache.Lookup(tenant, ip)
}

func (s *Service) Decide(req *rlsv3.RateLimitRequest, now time.Time) *rlsv3.RateLimitResponse {
	var tenant, ip string
	haveTenant, haveIP := false, false
	method, path := "GET", "/"
	for _, d := range req.GetDescriptors() {
		for _, e := range d.GetEntries() {
			switch e.GetKey() {
			case s.tenantKey:
				tenant, haveTenant = e.GetValue(), true
			case s.addressKey:
				ip = canonicalIP(e.GetValue())
				haveIP = ip != ""
			case "method":
				method = e.GetValue()
			case "path":
				path = e.GetValue()
			}
		}
	}
	s.checks.Add(1)
	n := len(req.GetDescriptors())
	if !haveTenant || !haveIP {
		s.unattributed.Add(1)
		return answer(rlsv3.RateLimitResponse_OK, n, nil)
	}
	v := s.Check(tenant, ip)
	code := rlsv3.RateLimitResponse_OK
	if v.Enforced() {
		code = rlsv3.RateLimitResponse_OVER_LIMIT
		s.overLimit.Add(1)
	}
	hs := Headers(v)
	add := make([]*corev3.HeaderValue, len(hs))
	for i, h := range hs {
		add[i] = &corev3.HeaderValue{Key: h[0], Value: h[1]}
	}
	if s.publish != nil {
		status := Status(v)
		for range min(max(int(req.GetHitsAddend()), 1), maxHits) {
			s.publish(now, tenant, ip, method, path, status)
		}
	}
	return answer(code, n, add)
}

func answer(code rlsv3.RateLimitResponse_Code, n int, add []*corev3.HeaderValue) *rlsv3.RateLimitResponse {
	statuses := make([]*rlsv3.RateLimitResponse_DescriptorStatus, n)
	for i := range statuses {
		statuses[i] = &rlsv3.RateLimitResponse_DescriptorStatus{Code: code}
	}
	return &rlsv3.RateLimitResponse{OverallCode: code, Statuses: statuses, ResponseHeadersToAdd: add}
}

// ShouldRateLimit is the RPC.
func (s *Service) ShouldRateLimit(_ context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	return s.Decide(req, time.Now()), nil
}

func (s *Service) Counts() map[string]int64 {
	return map[string]int64{"checks": s.checks.Load(), "over_limit": s.overLimit.Load(),
		"unattributed": s.unattributed.Load(), "fallback_allowed": s.fallbackAllowed.Load()}
}
