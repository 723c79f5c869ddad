package main

// Kafka: client options (security as the pipeline's settings say), the decisions feed and the
// request-event sink, with franz-go.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// KafkaConfig is what the pipeline's settings say about reaching the brokers.
type KafkaConfig struct {
	Brokers   []string
	Protocol  string // PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
	Mechanism string // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
	CAFile    string
	Username  string // from the environment: TW_KAFKA_USERNAME / TW_KAFKA_PASSWORD
	Password  string
}

func (k KafkaConfig) options(clientID string) ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(k.Brokers...), kgo.ClientID(clientID)}
	if strings.HasSuffix(k.Protocol, "SSL") {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if k.CAFile != "" {
			pem, err := os.ReadFile(k.CAFile)
			if err != nil {
				return nil, fmt.Errorf("cannot read the Kafka CA file: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, errors.New("no certificate in the Kafka CA file " + k.CAFile)
			}
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if strings.HasPrefix(k.Protocol, "SASL_") {
		if k.Username == "" || k.Password == "" {
			return nil, errors.New(k.Protocol + " needs TW_KAFKA_USERNAME and TW_KAFKA_PASSWORD")
		}
		switch k.Mechanism {
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: k.Username, Pass: k.Password}.AsMechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: k.Username, Pass: k.Password}.AsSha256Mechanism()))
		case "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(scram.Auth{User: k.Username, Pass: k.Password}.AsSha512Mechanism()))
		default:
			return nil, errors.New("unknown SASL mechanism " + k.Mechanism)
		}
	}
	return opts, nil
}

func (k KafkaConfig) client(clientID string, extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := k.options(clientID)
	if err != nil {
		return nil, err
	}
	return kgo.NewClient(append(opts, extra...)...)
}

// murmur2 is Kafka's default partitioner hash (the Java client's, and kafka-python's).
func murmur2(data []byte) int32 {
	const seed, m, r = uint32(0x9747b28c), uint32(0x5bd1e995), 24
	length := len(data)
	h := seed ^ uint32(length)
	for i := 0; i+4 <= length; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := length &^ 3
	switch length & 3 {
	case 3:
		h ^= uint32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

func partitionFor(key string, partitions int) int32 {
	return (murmur2([]byte(key)) & 0x7fffffff) % int32(partitions)
}

var errNoTopic = errors.New("topic does not exist (yet)")
