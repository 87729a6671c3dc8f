package syncjob

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Resources a job can sync, in the order a job reads them.
const (
	ResourceContacts = "contacts"
	ResourceChats    = "chats"
	ResourceMessages = "messages"
)

// AllResources are the resources of a job that names none, in reading order.
var AllResources = []string{ResourceContacts, ResourceChats, ResourceMessages}

// Job states. A job is queued, then running, then ends in one of the final states.
const (
	StateQueued    = "queued"
	StateRunning   = "running"
	StateSucceeded = "succeeded"
	// StatePartial: at least one resource failed (for example the chats route answered 500) and at
	// least one completed.
	StatePartial  = "partial"
	StateFailed   = "failed"
	StateCanceled = "canceled"
)

// Final reports whether a job in state s has ended.
func Final(s string) bool {
	switch s {
	case StateSucceeded, StatePartial, StateFailed, StateCanceled:
		return true
	}
	return false
}

// Phases of one resource within a job.
const (
	PhasePending  = "pending"
	PhaseRunning  = "running"
	PhaseDone     = "done"
	PhaseFailed   = "failed"
	PhaseCanceled = "canceled"
	// PhasePartial: the resource completed except for some parts (for example the messages of a
	// few chats could not be read).
	PhasePartial = "partial"
)

// Triggers say who asked for a job.
const (
	TriggerAPI  = "api"
	TriggerAuto = "auto"
)

// Request is what a sync is asked to do. The zero Request syncs every resource incrementally.
type Request struct {
	// Resources to sync, a subset of AllResources; empty means all.
	Resources []string `json:"resources,omitempty" example:"contacts,chats,messages"`
	// Full re-reads the messages of every chat, not only of the chats that changed since the last
	// sync. Items still count as delivered only when new or changed.
	Full bool `json:"full" example:"false"`
	// Trigger is who asked (TriggerAPI when empty); it is recorded with the job.
	Trigger string `json:"-"`
}

// ErrInvalidRequest is wrapped by the error of a Request that names an unknown resource.
var ErrInvalidRequest = errors.New("syncjob: invalid request")

// normalize validates r and returns it with its resources deduplicated in reading order.
func (r Request) normalize() (Request, error) {
	if len(r.Resources) == 0 {
		r.Resources = slices.Clone(AllResources)
	} else {
		for _, res := range r.Resources {
			if !slices.Contains(AllResources, res) {
				return r, fmt.Errorf("%w: unknown resource %q (want contacts, chats or messages)", ErrInvalidRequest, res)
			}
		}
		var out []string
		for _, res := range AllResources {
			if slices.Contains(r.Resources, res) {
				out = append(out, res)
			}
		}
		r.Resources = out
	}
	if r.Trigger == "" {
		r.Trigger = TriggerAPI
	}
	return r, nil
}

// Job is a sync job as the API shows it: what it was asked, where it stands, and per resource how
// far it got.
type Job struct {
	ID              string     `json:"id" example:"0193a5e4-7c1e-7a51-9d1e-3f0c2b7e8a11"`
	SessionID       string     `json:"sessionId" example:"demo_session"`
	State           string     `json:"state" enums:"queued,running,succeeded,partial,failed,canceled" example:"running"`
	Resources       []string   `json:"resources" example:"contacts,chats,messages"`
	Full            bool       `json:"full" example:"false"`
	Trigger         string     `json:"trigger" enums:"api,auto" example:"api"`
	CancelRequested bool       `json:"cancelRequested" example:"false"`
	Attempts        int        `json:"attempts" example:"1"`
	Error           string     `json:"error,omitempty" example:""`
	CreatedAt       time.Time  `json:"createdAt" example:"2026-11-28T10:00:00Z"`
	StartedAt       *time.Time `json:"startedAt,omitempty" example:"2026-11-28T10:00:01Z"`
	FinishedAt      *time.Time `json:"finishedAt,omitempty" example:"2026-11-28T10:03:12Z"`
	UpdatedAt       time.Time  `json:"updatedAt" example:"2026-11-28T10:01:00Z"`
	// Revision grows with every change of the job; the event stream sends one event per revision.
	Revision int64 `json:"revision" example:"42"`
	// Progress has one entry per resource of the job.
	Progress map[string]*Progress `json:"progress"`
	// ItemsExpireAt is when the items kept with the job for the CRM to pull expire.
	ItemsExpireAt *time.Time `json:"itemsExpireAt,omitempty" example:"2026-11-29T10:03:12Z"`
}

func timeRef(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// Progress is where one resource of a job stands.
type Progress struct {
	Phase string `json:"phase" enums:"pending,running,done,partial,failed,canceled" example:"running"`
	// Pages is the number of upstream pages read.
	Pages int `json:"pages" example:"12"`
	// Fetched counts the items read; New, Changed and Unchanged classify them against the
	// session's previous syncs.
	Fetched   int `json:"fetched" example:"1200"`
	New       int `json:"new" example:"1100"`
	Changed   int `json:"changed" example:"40"`
	Unchanged int `json:"unchanged" example:"60"`
	// Delivered counts the new and changed items handed over: acknowledged by the CRM sink when one
	// is configured, otherwise kept with the job for the CRM to pull.
	Delivered int `json:"delivered" example:"1000"`
	// Failed counts items that could not be delivered (the sink gave up) or not read (an item
	// without an id).
	Failed int `json:"failed" example:"0"`
	// Chats and ChatsDone (messages only) are the chats whose messages this job reads, and how many
	// of them are done.
	Chats     int `json:"chats,omitempty" example:"10"`
	ChatsDone int `json:"chatsDone,omitempty" example:"4"`
	// Errors are the last errors met (at most maxErrors), without secrets.
	Errors []string `json:"errors,omitempty"`
}

// maxErrors bounds the errors kept per resource.
const maxErrors = 10

func (p *Progress) addError(msg string) {
	p.Errors = append(p.Errors, msg)
	if len(p.Errors) > maxErrors {
		p.Errors = p.Errors[len(p.Errors)-maxErrors:]
	}
}

// Errors of the engine's methods.
var (
	// ErrJobNotFound: no job has that id (or it expired).
	ErrJobNotFound = errors.New("syncjob: job not found")
	// ErrJobFinished: the job has already ended, so it cannot be canceled.
	ErrJobFinished = errors.New("syncjob: job already finished")
	// ErrItemsExpired: the items kept with the job have expired.
	ErrItemsExpired = errors.New("syncjob: the job's items have expired")
	// ErrInvalidCursor: the cursor of an items page was not made by this gateway for that list.
	ErrInvalidCursor = errors.New("syncjob: invalid cursor")
)
