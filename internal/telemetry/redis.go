package telemetry

import (
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
)

// InstrumentRedis adds client spans to rdb's commands while tracing is on (nothing when off):
// the command's name only, never its arguments (they hold tokens and personal data), no caller
// lookup, no dial spans. Commands with no span to belong to start no trace (NewProvider).
func InstrumentRedis(rdb redis.UniversalClient) error {
	if !Enabled() {
		return nil
	}
	return redisotel.InstrumentTracing(rdb, redisotel.WithDBStatement(false),
		redisotel.WithCallerEnabled(false), redisotel.WithDialFilter(true))
}
