// Command rlsload offers ShouldRateLimit checks to a rate-limit service for the benchmark
// (tests/bench/bench_edge.py) and prints one JSON line: checks answered, checks/s, latency
// percentiles (ms), errors.
//
// It speaks gRPC over HTTP/2 frames it writes itself (one encoded request per key, reused;
// HPACK; flow control; the trailers' grpc-status checked), because a full gRPC client costs
// about as much CPU per call as the service does and would be what the benchmark measured.
//
//	-rate N      offer N checks/s in 1 ms steps (open loop: latency at a known load), or
//	-inflight N  keep N checks in flight (closed loop: the most the service answers)
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"
)

const path = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"

type conn struct {
	mu      sync.Mutex // writes
	w       *bufio.Writer
	fr      *http2.Framer
	enc     *hpack.Encoder
	hbuf    []byte
	hdrs    *hpackBuf
	next    uint32
	window  int64 // the service's connection-level receive window for our DATA
	windowC *sync.Cond
	sent    map[uint32]time.Time
	smu     sync.Mutex
	done    chan float64 // latency (ms) of each answered check; -1: an error
}

type hpackBuf struct{ b []byte }

func (h *hpackBuf) Write(p []byte) (int, error) { h.b = append(h.b, p...); return len(p), nil }

func dial(addr string, done chan float64) (*conn, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		return nil, err
	}
	w := bufio.NewWriterSize(nc, 64<<10)
	fr := http2.NewFramer(w, bufio.NewReaderSize(nc, 64<<10))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	hb := &hpackBuf{}
	c := &conn{w: w, fr: fr, enc: hpack.NewEncoder(hb), hdrs: hb, next: 1, window: 65535,
		sent: map[uint32]time.Time{}, done: done}
	c.windowC = sync.NewCond(&c.mu)
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30}); err != nil {
		return nil, err
	}
	if err := fr.WriteWindowUpdate(0, 1<<30); err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	go c.read(addr)
	return c, nil
}

// send writes one check (HEADERS + DATA); flush says whether to push the buffer out now.
func (c *conn) send(addr string, msg []byte, flush bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.window < int64(len(msg)) {
		c.windowC.Wait()
	}
	c.window -= int64(len(msg))
	id := c.next
	c.next += 2
	c.hdrs.b = c.hdrs.b[:0]
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", path}, {":authority", addr},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	c.smu.Lock()
	c.sent[id] = time.Now()
	c.smu.Unlock()
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hdrs.b, EndHeaders: true}); err != nil {
		return err
	}
	if err := c.fr.WriteData(id, true, msg); err != nil {
		return err
	}
	if flush {
		return c.w.Flush()
	}
	return nil
}

func (c *conn) flush() {
	c.mu.Lock()
	_ = c.w.Flush()
	c.mu.Unlock()
}

func (c *conn) finish(id uint32, ok bool) {
	c.smu.Lock()
	t, found := c.sent[id]
	delete(c.sent, id)
	c.smu.Unlock()
	if !found {
		return
	}
	if ok {
		c.done <- float64(time.Since(t).Microseconds()) / 1000
	} else {
		c.done <- -1
	}
}

func (c *conn) read(addr string) {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				c.finish(f.StreamID,
					headerValue(f, "grpc-status") == "0")
			}
		case *http2.DataFrame:
			if n := len(f.Data()); n > 0 {
				c.mu.Lock()
				_ = c.fr.WriteWindowUpdate(0, uint32(n))
				c.mu.Unlock()
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				c.mu.Lock()
				c.window += int64(f.Increment)
				c.windowC.Broadcast()
				c.mu.Unlock()
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.mu.Lock()
				_ = c.fr.WriteSettingsAck()
				_ = c.w.Flush()
				c.mu.Unlock()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.mu.Lock()
				_ = c.fr.WritePing(true, f.Data)
				_ = c.w.Flush()
				c.mu.Unlock()
			}
		case *http2.RSTStreamFrame:
			c.finish(f.StreamID, false)
		case *http2.GoAwayFrame:
			return
		}
	}
}

func headerValue(f *http2.MetaHeadersFrame, name string) string {
	for _, h := range f.Fields {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "the service's HOST:PORT")
	seconds := flag.Float64("seconds", 10, "how long to offer load")
	conns := flag.Int("conns", 4, "HTTP/2 connections")
	rate := flag.Float64("rate", 0, "checks/s offered (open loop); 0: closed loop with -inflight")
	inflight := flag.Int("inflight", 64, "checks kept in flight (closed loop)")
	tenant := flag.String("tenant", "acme", "tenant descriptor value")
	keys := flag.Int("keys", 1000, "distinct client addresses (10.x.y.z) cycled through")
	flag.Parse()
	msgs := make([][]byte, *keys)
	for i := range msgs {
		ip := fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255)
		b, _ := proto.Marshal(&rlsv3.RateLimitRequest{Domain: "bench", Descriptors: []*ratelimitv3.RateLimitDescriptor{{
			Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "tenant", Value: *tenant},
				{Key: "remote_address", Value: ip}}}}})
		msgs[i] = binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b)))
		msgs[i] = append(msgs[i], b...)
	}
	done := make(chan float64, 1<<16)
	cs := make([]*conn, *conns)
	for i := range cs {
		c, err := dial(*addr, done)
		if err != nil {
			fmt.Fprintln(os.Stderr, "rlsload:", err)
			os.Exit(2)
		}
		cs[i] = c
	}
	var lat []float64
	errs, sent := 0, 0
	collect := func(v float64) {
		if v < 0 {
			errs++
		} else {
			lat = append(lat, v)
		}
	}
	for i := range 200 { // warm-up, not counted
		_ = cs[i%len(cs)].send(*addr, msgs[i%len(msgs)], true)
		<-done
	}
	start := time.Now()
	end := start.Add(time.Duration(*seconds * float64(time.Second)))
	if *rate > 0 {
		tick := time.NewTicker(time.Millisecond)
		for now := range tick.C {
			if now.After(end) {
				break
			}
			due := int(now.Sub(start).Seconds() * *rate)
			for ; sent < due; sent++ {
				_ = cs[sent%len(cs)].send(*addr, msgs[sent%len(msgs)], false)
			}
			for _, c := range cs {
				c.flush()
			}
		drain:
			for {
				select {
				case v := <-done:
					collect(v)
				default:
					break drain
				}
			}
		}
		tick.Stop()
	} else {
		for ; sent < *inflight; sent++ {
			_ = cs[sent%len(cs)].send(*addr, msgs[sent%len(msgs)], true)
		}
		for time.Now().Before(end) {
			collect(<-done)
			_ = cs[sent%len(cs)].send(*addr, msgs[sent%len(msgs)], true)
			sent++
		}
	}
	took := time.Since(start).Seconds()
	timeout := time.After(5 * time.Second)
wait:
	for len(lat)+errs < sent {
		select {
		case v := <-done:
			collect(v)
		case <-timeout:
			break wait
		}
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	out, _ := json.Marshal(map[string]any{"sent": sent, "checks": len(lat), "per_s": float64(len(lat)) / took,
		"p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1), "errors": errs, "unanswered": sent - len(lat) - errs})
	fmt.Println(string(out))
}
