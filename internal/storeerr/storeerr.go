// Package storeerr tells the errors that mean the gateway's shared store (Redis) cannot be reached
// for now: connections refused, reset or timed out, a closed client, an empty connection pool, and
// the answers a server gives while it is being replaced (READONLY after a failover, LOADING,
// MASTERDOWN, CLUSTERDOWN, TRYAGAIN, no sentinel reachable).
//
// It owns that one judgement, so that every route answers such a failure the same way: 503
// problem+json with Retry-After (ErrUnavailable carries problem.KindStoreUnavailable), never a
// 500. It must not classify an answer about the request itself (a wrong type, a script error): a
// bug stays a 500.
package storeerr

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/inboxhub-gateway/gateway/internal/problem"
)

// ErrUnavailable marks an error as the store being unreachable for now (see Mark).
var ErrUnavailable = problem.Sentinel("the gateway's store is unreachable for now", problem.KindStoreUnavailable)

// Unavailable reports whether err says the store cannot be reached for now (a failover, a restart,
// a network fault), as opposed to an answer about the command. A canceled request is not.
func Unavailable(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, ErrUnavailable),
		errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	case redis.IsReadOnlyError(err), redis.IsLoadingError(err), redis.IsMasterDownError(err),
		redis.IsClusterDownError(err), redis.IsTryAgainError(err), redis.IsMaxClientsError(err),
		redis.IsNoReplicasError(err):
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	// go-redis says so in words only when no sentinel answers.
	return strings.Contains(err.Error(), "all sentinels specified in configuration are unreachable")
}

// Mark returns err marked with ErrUnavailable when Unavailable(err), else err unchanged.
func Mark(err error) error {
	if !Unavailable(err) || errors.Is(err, ErrUnavailable) {
		return err
	}
	return errors.Join(ErrUnavailable, err)
}
