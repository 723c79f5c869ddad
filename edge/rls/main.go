// Command tenantwatch-rls is Envoy's global rate-limit service over the pipeline's decisions:
// `tenantwatch edge serve` builds and starts it (see docs/EDGE.md).
//
//	tenantwatch-rls -brokers HOST:PORT -prefix tw -listen 127.0.0.1:8081 [-wait 30]
//	tenantwatch-rls -conform   (JSON lines on stdin: the cache and answers without Kafka, for tests)
//
// Exit status: 0 stopped by SIGINT/SIGTERM, 2 bad usage or cannot listen, 3 Kafka did not
// answer (or the topics do not exist) within -wait.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
)

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "tenantwatch edge serve: "+format+"\n", args...)
	os.Exit(code)
}

// serverOptions tune grpc-go for many small unary calls (see "Latency" in docs/EDGE.md):
//   - stream workers: a pool of goroutines serves the calls. By default every call gets a new
//     goroutine whose stack grows to the handler's depth by copying (runtime.newstack: 17 % of the
//     service's CPU at 20k checks/s); a worker keeps its grown stack. A call that finds every
//     worker busy still gets a goroutine of its own, so the pool bounds nothing.
//   - fixed flow-control windows: a window set by hand turns off grpc-go's BDP estimation,
//     which sends a PING of its own each round trip while data arrives (one more frame to
//     write and flush) to size a window that a check's 100-byte messages never come near.
func serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.NumStreamWorkers(streamWorkers),
		grpc.InitialWindowSize(1 << 20), grpc.InitialConnWindowSize(1 << 20),
	}
}

// streamWorkers is the goroutines kept for calls: about as many as arrive in one read of the
// connections (Envoy sends a burst of checks in one write), so a burst finds idle workers.
const streamWorkers = 64

func main() {
	log.SetFlags(0)
	log.SetPrefix("edge: ")
	brokers := flag.String("brokers", "127.0.0.1:9092", "Kafka bootstrap servers, comma-separated")
	prefix := flag.String("prefix", "tw", "topic prefix of the pipeline")
	listen := flag.String("listen", "127.0.0.1:8081", "HOST:PORT to serve gRPC on")
	tenantKey := flag.String("tenant-key", "tenant", "descriptor entry key holding the tenant id")
	addressKey := flag.String("address-key", "remote_address", "descriptor entry key holding the client IP")
	wait := flag.Float64("wait", 30, "seconds to wait for Kafka before giving up (exit 3)")
	stale := flag.Float64("stale-after", 15, "seconds without an answer from Kafka before every check is allowed")
	capacity := flag.Int("capacity", 10000, "request events queued at most (then dropped and counted)")
	protocol := flag.String("security-protocol", "PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
	mechanism := flag.String("sasl-mechanism", "SCRAM-SHA-512", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	caFile := flag.String("ca-file", "", "CA bundle of the brokers' TLS certificates (default: the system's)")
	conform := flag.Bool("conform", false, "answer JSON lines on stdin without Kafka (the conformance test)")
	flag.Parse()
	if os.Getenv("GOGC") == "" {
		// The live heap is a few MB (the cache, connections, the event queue) and a check
		// allocates 3-4 kB, so Go's default (a collection when the heap doubles) ran ~30
		// collections a second at 20k checks/s, each a few ms of marking with assists charged to
		// the calls. Five times the live heap: ~5 a second, a heap target of 25-40 MB, not ~8.
		debug.SetGCPercent(400)
	}
	if *conform {
		runConform(*tenantKey, *addressKey)
		return
	}
	kafka := KafkaConfig{Brokers: strings.Split(*brokers, ","), Protocol: *protocol, Mechanism: *mechanism,
		CAFile: *caFile, Username: os.Getenv("TW_KAFKA_USERNAME"), Password: os.Getenv("TW_KAFKA_PASSWORD")}
	if _, err := kafka.options("check"); err != nil {
		fail(2, "%v", err)
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		fail(2, "cannot listen on %s: %v", *listen, err)
	}
	cache := NewCache()
	feed := NewFeed(cache, kafka, *prefix, time.Duration(*stale*float64(time.Second)))
	ctx, stopFeed := context.WithCancel(context.Background())
	go feed.Run(ctx)
	select {
	case <-feed.ready:
	case <-time.After(time.Duration(*wait * float64(time.Second))):
		fail(3, "Kafka at %s did not answer within %.0fs (or %s.decisions does not exist: run `tenantwatch topics`)",
			*brokers, *wait, *prefix)
	}
	sink := NewSink(kafka, *prefix+".requests", *capacity)
	sink.Start()
	service := &Service{cache: cache, live: feed.Live, publish: sink.Offer, tenantKey: *tenantKey,
		addressKey: *addressKey}
	server := grpc.NewServer(serverOptions()...)
	rlsv3.RegisterRateLimitServiceServer(server, service)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-signals
		stopped := make(chan struct{})
		go func() { server.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(time.Second):
			server.Stop()
		}
	}()
	fmt.Printf("edge: rate-limit service on %s, %d refused key(s) cached\n", lis.Addr(), cache.Len())
	if err := server.Serve(lis); err != nil {
		fail(2, "%v", err)
	}
	sink.Close(5 * time.Second)
	stopFeed()
	now := cache.Now()
	stats := map[string]any{"service": service.Counts(), "live": feed.Live(), "refused_keys": cache.Len(),
		"decisions_applied": cache.applied, "decisions_rejected": cache.rejected, "feed": feed.Counts(),
		"events": sink.Counts()}
	if !math.IsInf(now, -1) {
		stats["event_time"] = now
	}
	out, _ := json.Marshal(stats)
	fmt.Println(string(out))
}
