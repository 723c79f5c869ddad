package main

// The decisions feed: reads every partition of <prefix>.decisions and <prefix>.ratelimit-policies
// from the beginning (compacted and keyed: every live key's decision, every tenant's limits),
// then follows them; no consumer group. Ready once it reached the end offsets seen at start.
// Live: ready, and the broker answered within staleAfter (probed every 2 s).

import (
	"context"
	"fmt"
	"log"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type Feed struct {
	cache               *Cache
	kafka               KafkaConfig
	decisions, policies string
	staleAfter          time.Duration
	ready               chan struct{}
	readyDone           atomic.Bool
	lastOK              atomic.Int64 // unix nanoseconds the broker last answered
	records, reconnects atomic.Int64
}

func NewFeed(cache *Cache, kafka KafkaConfig, prefix string, staleAfter time.Duration) *Feed {
	return &Feed{cache: cache, kafka: kafka, decisions: prefix + ".decisions", policies: prefix + ".ratelimit-policies",
		staleAfter: staleAfter, ready: make(chan struct{})}
}

func (f *Feed) Live() bool {
	return f.readyDone.Load() && time.Since(time.Unix(0, f.lastOK.Load())) < f.staleAfter
}

// Run follows the topics until ctx ends, reconnecting after a failure (said once each).
func (f *Feed) Run(ctx context.Context) {
	said := ""
	for ctx.Err() == nil {
		if err := f.follow(ctx); err != nil && ctx.Err() == nil {
			if msg := err.Error(); msg != said { // said once, not once a second
				log.Printf("decisions feed: %v; retrying", err)
				said = msg
			}
			f.reconnects.Add(1)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (f *Feed) ends(ctx context.Context, adm *kadm.Client) (map[string]map[int32]int64, error) {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	topics, err := adm.ListTopics(c, f.decisions, f.policies)
	if err != nil {
		return nil, err
	}
	for _, t := range []string{f.decisions, f.policies} {
		if d, ok := topics[t]; !ok || d.Err != nil || len(d.Partitions) == 0 {
			return nil, fmt.Errorf("%s: %w", t, errNoTopic)
		}
	}
	listed, err := adm.ListEndOffsets(c, f.decisions, f.policies)
	if err != nil {
		return nil, err
	}
	out := map[string]map[int32]int64{f.decisions: {}, f.policies: {}}
	var failed error
	listed.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			failed = o.Err
		}
		out[o.Topic][o.Partition] = o.Offset
	})
	return out, failed
}

func (f *Feed) follow(ctx context.Context) error {
	plainClient, err := f.kafka.client("tenantwatch-edge-feed")
	if err != nil {
		return err
	}
	adm := kadm.NewClient(plainClient)
	defer adm.Close()
	ends, err := f.ends(ctx, adm)
	if err != nil {
		return err
	}
	f.lastOK.Store(time.Now().UnixNano())
	start := map[string]map[int32]kgo.Offset{}
	for t, parts := range ends {
		start[t] = map[int32]kgo.Offset{}
		for p := range parts {
			start[t][p] = kgo.NewOffset().AtStart()
		}
	}
	consumer, err := f.kafka.client("tenantwatch-edge-feed", kgo.ConsumePartitions(start), kgo.KeepControlRecords(),
		kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		return err
	}
	defer consumer.Close()
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	probeErr := make(chan error, 1)
	go f.probe(probeCtx, adm, probeErr)
	next := map[string]map[int32]int64{f.decisions: {}, f.policies: {}}
	lastRecord := time.Now()
	for ctx.Err() == nil {
		select {
		case err := <-probeErr:
			return err
		default:
		}
		pollCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		fetches := consumer.PollRecords(pollCtx, 5000)
		cancel()
		n := 0
		fetches.EachRecord(func(r *kgo.Record) {
			next[r.Topic][r.Partition] = r.Offset + 1
			n++
			if r.Attrs.IsControl() {
				return
			}
			if r.Topic == f.decisions {
				f.cache.ApplyDecision(r.Key, r.Value, r.Partition)
			} else {
				f.cache.ApplyPolicy(r.Key, r.Value)
			}
		})
		f.records.Add(int64(n))
		if n > 0 {
			lastRecord = time.Now()
		}
		if !f.readyDone.Load() && (caughtUp(ends, next) || time.Since(lastRecord) > 5*time.Second) {
			// (or five quiet seconds: a compacted-away transaction marker can leave an end offset
			// that no record reaches)
			f.readyDone.Store(true)
			close(f.ready)
			log.Printf("decisions feed caught up: %d refused key(s)", f.cache.Len())
		}
	}
	return nil
}

func caughtUp(ends, next map[string]map[int32]int64) bool {
	for t, parts := range ends {
		for p, end := range parts {
			if end > 0 && next[t][p] < end {
				return false
			}
		}
	}
	return true
}

// probe asks the broker for an end offset every 2 s: an empty poll does not tell a quiet topic
// from a lost broker.
func (f *Feed) probe(ctx context.Context, adm *kadm.Client, failed chan<- error) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := adm.ListEndOffsets(c, f.decisions)
		cancel()
		if err == nil {
			f.lastOK.Store(time.Now().UnixNano())
		} else if ctx.Err() == nil && time.Since(time.Unix(0, f.lastOK.Load())) > f.staleAfter {
			failed <- err
			return
		}
	}
}

func (f *Feed) Counts() map[string]int64 {
	return map[string]int64{"records": f.records.Load(), "reconnects": f.reconnects.Load()}
}
