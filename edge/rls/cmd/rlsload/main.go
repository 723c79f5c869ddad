// Command rlsload offers ShouldRateLimit checks to a rate-limit service for the benchmark
// (tests/bench/bench_edge.py) and prints one JSON line: checks answered, checks/s, latency
// percentiles (ms), errors.
//
// It speaks gRPC over HTTP/2 frames it writes itself (one encoded request per key, reused;
// HPACK; flow control; the trailers' grpc-status checked), because a full gRPC client costs
// about as much CPU per call as the service does and would be what the benchmark measured.
//
//	-rate N      offer N checks/s (open loop: latency at a known load), or
//	-inflight N  keep N checks in flight (closed loop: the most the service answers)
//
// Open loop, check i is due at start + i/N, and its latency runs from then, not from when it was
// written: a client that falls behind (descheduled, or held up by flow control) must not hide
// the wait from the figures (coordinated omission). Checks are written when due, to within
// the sleep's precision (nanosleep, tens of µs; Go's timers wake in whole milliseconds here,
// which sent checks in bunches of N/1000, each bunch queueing behind itself at the service).
// Besides the latency from the due time, it prints the latency from the write (what the
// service and the network add) and how late the writes were (what the client adds).
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"syscall"
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
	sent    map[uint32]stamp
	smu     sync.Mutex
	done    chan result
}

// stamp: when a check was due and when it was written.
type stamp struct{ due, wrote time.Time }

// result of one check: latency (ms) from its due time and from its write; ok false for an error.
type result struct {
	fromDue, fromWrite float64
	ok                 bool
}

type hpackBuf struct{ b []byte }

func (h *hpackBuf) Write(p []byte) (int, error) { h.b = append(h.b, p...); return len(p), nil }

func dial(addr string, done chan result) (*conn, error) {
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
		sent: map[uint32]stamp{}, done: done}
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

// send writes one check (HEADERS + DATA) due at `due`; flush says whether to push the buffer out now.
func (c *conn) send(addr string, msg []byte, due time.Time, flush bool) error {
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
	c.sent[id] = stamp{due, time.Now()}
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
	now := time.Now()
	c.done <- result{ms(now.Sub(t.due)), ms(now.Sub(t.wrote)), ok}
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

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// sleepUntil waits until t with nanosleep: Go's timers (time.Sleep) wake in whole milliseconds
// on Linux when the process is otherwise idle, too coarse for checks 50 µs apart.
func sleepUntil(t time.Time) {
	for d := time.Until(t); d > 0; d = time.Until(t) {
		ts := syscall.NsecToTimespec(d.Nanoseconds())
		_ = syscall.Nanosleep(&ts, nil)
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
	// nanosleep holds the sender's P (the Go runtime's processor) while it sleeps: with one P
	// (a client pinned to one core) the readers would wait for the sender's sleep to end and
	// the answers' latency would be the client's
	runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0)))
	msgs := make([][]byte, *keys)
	for i := range msgs {
		ip := fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255)
		b, _ := proto.Marshal(&rlsv3.RateLimitRequest{Domain: "bench", Descriptors: []*ratelimitv3.RateLimitDescriptor{{
			Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "tenant", Value: *tenant},
				{Key: "remote_address", Value: ip}}}}})
		msgs[i] = binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b)))
		msgs[i] = append(msgs[i], b...)
	}
	done := make(chan result, 1<<16)
	cs := make([]*conn, *conns)
	for i := range cs {
		c, err := dial(*addr, done)
		if err != nil {
			fmt.Fprintln(os.Stderr, "rlsload:", err)
			os.Exit(2)
		}
		cs[i] = c
	}
	var lat, wrote, late []float64
	errs, sent := 0, 0
	collect := func(r result) {
		if !r.ok {
			errs++
		} else {
			lat = append(lat, r.fromDue)
			wrote = append(wrote, r.fromWrite)
		}
	}
	for i := range 200 { // warm-up, not counted
		_ = cs[i%len(cs)].send(*addr, msgs[i%len(msgs)], time.Now(), true)
		<-done
	}
	start := time.Now()
	end := start.Add(time.Duration(*seconds * float64(time.Second)))
	if *rate > 0 {
		interval := time.Duration(float64(time.Second) / *rate)
		total := int(*seconds * *rate)
		used := make([]bool, len(cs))
		for sent < total {
			sleepUntil(start.Add(time.Duration(sent) * interval))
			now := time.Now()
			for ; sent < total; sent++ { // every check due by now (more than one only if late)
				due := start.Add(time.Duration(sent) * interval)
				if due.After(now) {
					break
				}
				late = append(late, ms(now.Sub(due)))
				k := sent % len(cs)
				_ = cs[k].send(*addr, msgs[sent%len(msgs)], due, false)
				used[k] = true
			}
			for k, c := range cs {
				if used[k] {
					c.flush()
					used[k] = false
				}
			}
		drain:
			for {
				select {
				case r := <-done:
					collect(r)
				default:
					break drain
				}
			}
		}
	} else {
		for ; sent < *inflight; sent++ {
			_ = cs[sent%len(cs)].send(*addr, msgs[sent%len(msgs)], time.Now(), true)
		}
		for time.Now().Before(end) {
			collect(<-done)
			_ = cs[sent%len(cs)].send(*addr, msgs[sent%len(msgs)], time.Now(), true)
			sent++
		}
	}
	took := time.Since(start).Seconds()
	timeout := time.After(5 * time.Second)
wait:
	for len(lat)+errs < sent {
		select {
		case r := <-done:
			collect(r)
		case <-timeout:
			break wait
		}
	}
	q := func(xs []float64, p float64) float64 {
		if len(xs) == 0 {
			return 0
		}
		return xs[min(len(xs)-1, int(p*float64(len(xs))))]
	}
	for _, xs := range [][]float64{lat, wrote, late} {
		slices.Sort(xs)
	}
	got := map[string]any{"sent": sent, "checks": len(lat), "per_s": float64(len(lat)) / took,
		"p50_ms": q(lat, 0.5), "p99_ms": q(lat, 0.99), "p999_ms": q(lat, 0.999), "max_ms": q(lat, 1),
		"errors": errs, "unanswered": sent - len(lat) - errs}
	if *rate > 0 { // from the write, and the client's own lateness (latency above is from the due time)
		got["write_p50_ms"], got["write_p99_ms"] = q(wrote, 0.5), q(wrote, 0.99)
		got["late_p50_ms"], got["late_p99_ms"] = q(late, 0.5), q(late, 0.99)
	}
	out, _ := json.Marshal(got)
	fmt.Println(string(out))
}
