package syncjob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/inboxhub-gateway/gateway/internal/clip"
	"github.com/inboxhub-gateway/gateway/internal/jobs"
	"github.com/inboxhub-gateway/gateway/internal/lease"
)

var (
	// errBusy: another runner holds the job (its task was delivered twice); try again later.
	errBusy = errors.New("syncjob: another runner holds the job")
	// errStopping: the worker is stopping (shutdown, lost lease, takeover); the job resumes from
	// its checkpoint on the next attempt, which does not count as a failure.
	errStopping = errors.New("syncjob: worker stopping; the job resumes from its checkpoint")
)

// isFailure tells the queue which errors count against the job's retries: not a stop (this
// replica shutting down cancels the handlers' context), nor a task delivered while another runner
// holds the job.
func isFailure(err error) bool {
	return !errors.Is(err, errBusy) && !errors.Is(err, errStopping) && !errors.Is(err, context.Canceled)
}

// retryDelay is when the queue tries a job again: soon after a stop or a takeover, later while
// another runner holds it, with exponential backoff and jitter after a failure of the gateway's own.
func (e *Engine) retryDelay(n int, err error) time.Duration {
	switch {
	case errors.Is(err, errStopping), errors.Is(err, context.Canceled):
		return time.Second
	case errors.Is(err, errBusy):
		return max(e.cfg.OwnerLease/6, time.Second)
	}
	return jobs.DefaultRetryDelay(n, err)
}

// processTask is the queue's handler of sync tasks.
func (e *Engine) processTask(ctx context.Context, t jobs.Task) error {
	var p taskPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil || p.JobID == "" {
		return fmt.Errorf("syncjob: unreadable task payload: %w", jobs.ErrSkipRetry)
	}
	return e.runJob(ctx, p.JobID, p.SessionID)
}

// onArchived ends the job as failed when the queue gives up on its task.
func (e *Engine) onArchived(ctx context.Context, t jobs.Task, err error) {
	var p taskPayload
	_ = json.Unmarshal(t.Payload, &p)
	e.log.Warn("sync job given up", "jobId", p.JobID, "sessionId", p.SessionID, "retried", t.Retried,
		"maxRetry", t.MaxRetry, "error", err.Error())
	if p.JobID == "" {
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = e.st.finish(wctx, jobMeta{ID: p.JobID, SessionID: p.SessionID}, "", StateFailed, e.cfg.Clock(),
		fError, clip.Bytes(fmt.Sprintf("the job failed after %d attempts: %v", t.Retried, err), 300, clip.Ellipsis))
}

// runJob runs one attempt of a job: it takes the job (a lease renewed in the background), resumes
// from its checkpoint, and ends it unless the worker stops first.
func (e *Engine) runJob(ctx context.Context, jobID, sessionID string) error {
	j, cp, pending, err := e.pendingJob(ctx, jobID, sessionID)
	if !pending || err != nil {
		return err
	}
	owner, err := e.st.acquireOwner(ctx, jobMeta{ID: j.ID, SessionID: j.SessionID}, e.cfg.OwnerLease)
	if err != nil {
		return err
	}
	if owner == nil {
		return errBusy
	}
	runCtx, release := e.hold(ctx, owner, jobID)
	defer release()
	r := newRunner(e, j, cp, owner.Token())
	ended, err := e.attempt(runCtx, r, j.CancelRequested)
	if ended || err != nil {
		return err
	}
	return e.endJob(ctx, r, jobID)
}

// pendingJob loads the job and its checkpoint; not pending when it is unknown, expired or already
// ended. A task of an earlier release may lack the session.
func (e *Engine) pendingJob(ctx context.Context, jobID, sessionID string) (j Job, cp checkpoint, pending bool, err error) {
	load := e.st.load
	if sessionID != "" {
		load = func(ctx context.Context, id string) (Job, checkpoint, error) { return e.st.loadIn(ctx, sessionID, id) }
	}
	j, cp, err = load(ctx, jobID)
	if errors.Is(err, ErrJobNotFound) {
		e.log.Warn("sync task of an unknown or expired job dropped", "jobId", jobID)
		return Job{}, checkpoint{}, false, nil
	}
	if err != nil {
		return Job{}, checkpoint{}, false, err
	}
	return j, cp, !Final(j.State), nil
}

// hold keeps the job's owner lease renewed in the background. The run's context is cancelled
// (errLostOwnership) when the lease is lost; release ends the run and gives the lease back.
func (e *Engine) hold(ctx context.Context, owner *lease.Lease, jobID string) (runCtx context.Context, release func()) {
	runCtx, cancel := context.WithCancelCause(ctx)
	kept := owner.Start(runCtx, lease.KeepOptions{Patient: true, OnLost: func(error) {
		e.log.Warn("sync job lease lost; stopping this runner", "jobId", jobID)
		cancel(errLostOwnership)
	}})
	return runCtx, func() {
		cancel(nil)
		// A no-op when the job ended (the owner key is gone) or was taken over.
		_ = kept.Release(ctx, 2*time.Second)
	}
}

// attempt starts the runner and, unless a cancel was asked, runs the job; a run past the job's
// timeout is to end as timed out. ended: the job ended meanwhile, there is nothing to finish; an
// error says what the queue should do with the task of a run stopped early.
func (e *Engine) attempt(runCtx context.Context, r *runner, cancelRequested bool) (ended bool, err error) {
	if err := r.start(runCtx); err != nil {
		if errors.Is(err, errJobEnded) {
			return true, nil
		}
		return false, e.stopReason(runCtx, err)
	}
	if cancelRequested {
		r.canceled = true
		return false, nil
	}
	err = r.run(runCtx)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, errJobEnded):
		return true, nil
	case errors.Is(context.Cause(runCtx), context.DeadlineExceeded) && !errors.Is(err, errLostOwnership):
		r.jobErr = fmt.Sprintf("the job ran longer than its timeout (%s)", e.cfg.JobTimeout)
		r.timedOut = true
		return false, nil
	}
	return false, e.stopReason(runCtx, err)
}

// endJob stores the job's final state, still as its owner, and counts and logs its end.
func (e *Engine) endJob(ctx context.Context, r *runner, jobID string) error {
	state := r.finalState()
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer fcancel()
	if _, err := e.st.finish(fctx, r.meta, r.token, state, e.cfg.Clock(), r.finalFields()...); err != nil {
		if errors.Is(err, errLostOwnership) {
			return errStopping
		}
		return err
	}
	e.metrics.jobEnded(state, r.meta.Trigger, r.prog, e.cfg.Clock().Sub(r.meta.CreatedAt))
	e.log.Info("sync job ended", "jobId", jobID, "sessionId", r.meta.SessionID, "state", state)
	return nil
}

// stopReason maps why a run stopped early to what the queue should do with the task.
func (e *Engine) stopReason(runCtx context.Context, err error) error {
	if errors.Is(err, errLostOwnership) || runCtx.Err() != nil {
		return fmt.Errorf("%w (%v)", errStopping, err)
	}
	return err
}
