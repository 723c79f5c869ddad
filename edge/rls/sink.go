package main

// The request-event sink: a bounded channel and one producer goroutine. Offer never blocks: a
// full channel drops the event (counted). The goroutine packs a partition's events as one JSON
// array per record (what the pipeline's SDK does) on the partition of their tenant:ip key
// (murmur2, as Kafka's default partitioner), and bounds what the producer holds unacknowledged
// (maxInFlight events); a broker that is missing or gone costs the queued events, never a check.
//
// The goroutine wakes for the first event of a batch, then waits `gather` and takes everything
// queued meanwhile: a check hands its event over without waking anything. Woken by every event
// (as it was), it ran between the checks thousands of times a second, each time ahead of the
// calls already waiting for the service's core (a goroutine readied by a channel send runs next).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	maxBatch = 500                  // events per JSON-array record at most
	gather   = 5 * time.Millisecond // how long a batch gathers after its first event
)

type request struct {
	ts                       time.Time
	tenant, ip, method, path string
	status                   int
}

type Sink struct {
	kafka       KafkaConfig
	topic       string
	queue       chan request
	maxInFlight int64
	node        string
	n           int64
	done        chan struct{}
	stop        chan struct{}

	offered, sent, droppedFull, droppedUnavailable, failed, invalid, handed atomic.Int64
}

func NewSink(kafka KafkaConfig, topic string, capacity int) *Sink {
	node := make([]byte, 6)
	_, _ = rand.Read(node)
	return &Sink{kafka: kafka, topic: topic, queue: make(chan request, capacity), maxInFlight: 5 * int64(capacity),
		node: hex.EncodeToString(node), done: make(chan struct{}), stop: make(chan struct{})}
}

// Offer queues one event; false (counted) if the queue is full. Never blocks.
func (s *Sink) Offer(ts time.Time, tenant, ip, method, path string, status int) {
	select {
	case s.queue <- request{ts, tenant, ip, method, path, status}:
		s.offered.Add(1)
	default:
		s.droppedFull.Add(1)
	}
}

func (s *Sink) Start() { go s.run() }

// Close sends what is queued (up to timeout) and stops.
func (s *Sink) Close(timeout time.Duration) {
	close(s.stop)
	select {
	case <-s.done:
	case <-time.After(timeout):
	}
}

func (s *Sink) dropQueued() {
	for {
		select {
		case <-s.queue:
			s.droppedUnavailable.Add(1)
		default:
			return
		}
	}
}

func (s *Sink) partitions(cl *kgo.Client) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	topics, err := kadm.NewClient(cl).ListTopics(ctx, s.topic)
	if err != nil {
		return 0
	}
	if d, ok := topics[s.topic]; ok && d.Err == nil {
		return len(d.Partitions)
	}
	return 0
}

func (s *Sink) run() {
	defer close(s.done)
	cl, err := s.kafka.client("tenantwatch-edge", kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// a batch is already gathered (`gather`): the linger only lets one tick's records of
		// several partitions leave in one request
		kgo.ProducerLinger(time.Millisecond), kgo.RequiredAcks(kgo.AllISRAcks()),
		// uncompressed, as the pipeline's own producers: its consumers need no codec for these
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordDeliveryTimeout(30*time.Second), kgo.ProduceRequestTimeout(5*time.Second))
	if err != nil {
		log.Printf("request events: %v; dropping them", err)
		for {
			select {
			case <-s.stop:
				s.dropQueued()
				return
			case <-s.queue:
				s.droppedUnavailable.Add(1)
			}
		}
	}
	defer cl.Close()
	parts, warned := 0, false
	batch := make([]request, 0, maxBatch)
	wait := time.NewTimer(gather)
	wait.Stop()
	for {
		stopping := false
		select {
		case r := <-s.queue:
			batch = append(batch, r)
			wait.Reset(gather)
			select {
			case <-wait.C:
			case <-s.stop:
				stopping = true
			}
		case <-s.stop:
			stopping = true
		}
		for more := true; more; {
		drain:
			for len(batch) < maxBatch {
				select {
				case r := <-s.queue:
					batch = append(batch, r)
				default:
					more = false
					break drain
				}
			}
			if parts == 0 && len(batch) > 0 {
				if parts = s.partitions(cl); parts == 0 {
					if !warned {
						log.Printf("request events: no partitions for %s; dropping until the broker answers", s.topic)
						warned = true
					}
					s.droppedUnavailable.Add(int64(len(batch)))
					batch = batch[:0]
					s.dropQueued()
				}
			}
			if len(batch) > 0 {
				s.send(cl, batch, parts)
				batch = batch[:0]
			}
		}
		if stopping {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = cl.Flush(ctx)
			cancel()
			return
		}
	}
}

func (s *Sink) send(cl *kgo.Client, batch []request, parts int) {
	if s.handed.Load()-s.sent.Load()-s.failed.Load() >= s.maxInFlight {
		// the broker stopped acknowledging: what the producer holds stays bounded
		s.droppedUnavailable.Add(int64(len(batch)))
		return
	}
	values := make([][]byte, parts) // one JSON array per partition, sized for its share of the batch
	counts := make([]int64, parts)
	for _, r := range batch {
		p := partitionFor(r.tenant+":"+r.ip, parts)
		v := values[p]
		if v == nil {
			v = make([]byte, 1, 2+eventSize*(len(batch)/parts+1))
			v[0] = '['
		} else {
			v = append(v, ',')
		}
		s.n++
		v, ok := appendEvent(v, s.node, s.n, r.ts, r.tenant, r.ip, r.method, r.path, r.status)
		if !ok {
			s.invalid.Add(1)
			if len(v) == 1 {
				continue // values[p] stays as it was (nil: none yet)
			}
			v = v[:len(v)-1] // the comma
		} else {
			counts[p]++
		}
		values[p] = v
	}
	for p, v := range values {
		n := counts[p]
		if n == 0 {
			continue
		}
		s.handed.Add(n)
		cl.Produce(context.Background(), &kgo.Record{Topic: s.topic, Partition: int32(p), Value: append(v, ']')},
			func(_ *kgo.Record, err error) {
				if err != nil {
					s.failed.Add(n)
				} else {
					s.sent.Add(n)
				}
			})
	}
}

// eventSize is about the bytes of one event's JSON (an IPv4 client, a short path).
const eventSize = 240

func (s *Sink) Counts() map[string]int64 {
	return map[string]int64{"offered": s.offered.Load(), "sent": s.sent.Load(), "dropped_full": s.droppedFull.Load(),
		"dropped_unavailable": s.droppedUnavailable.Load(), "failed": s.failed.Load(), "invalid": s.invalid.Load()}
}
