package lease

import (
	"errors"
	"fmt"
	"strings"
)

// Reason says why a store refused a write.
type Reason string

const (
	// ReasonChanged: the stored lease has another ETag than the caller's copy.
	ReasonChanged Reason = "changed since read"
	// ReasonExists: Create found a lease with that id.
	ReasonExists Reason = "already exists"
	// ReasonOwned: Acquire found another owner that renewed within the
	// expiry interval, and the caller did not ask to steal.
	ReasonOwned Reason = "owned by a live instance"
	// ReasonGone: the lease does not exist (deleted, e.g. after a split).
	ReasonGone Reason = "does not exist"
)

// ConflictError is a refused compare-and-set write: the stored lease is not
// the copy the caller read, already exists, or is held by someone else. The
// caller should list again and decide anew; retrying the same write with the
// same copy can never succeed.
type ConflictError struct {
	Op     string // "create", "acquire", "renew", "checkpoint", "release", "delete"
	ID     string
	Reason Reason
	Owner  string // the stored owner, when known
}

func (e *ConflictError) Error() string {
	s := fmt.Sprintf("lease: %s %s: %s", e.Op, e.ID, e.Reason)
	if e.Owner != "" {
		s += " (owner " + e.Owner + ")"
	}
	return s
}

// Conflict marks the error for IsConflict.
func (e *ConflictError) Conflict() bool { return true }

// LostError says the caller no longer owns the lease: another instance took
// it, it was deleted, or it could not be renewed within the expiry interval
// (so another instance may have taken it). Work done under the lease since
// its last checkpoint must be dropped, not checkpointed; the new owner
// redoes it.
type LostError struct {
	Op    string
	ID    string
	Owner string // the new owner; "" if unknown, unowned or deleted
	Gone  bool   // the lease was deleted
	Err   error  // what revealed the loss, if anything more than the above
}

func (e *LostError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "lease: %s %s: lease lost", e.Op, e.ID)
	switch {
	case e.Gone:
		b.WriteString(": deleted")
	case e.Owner != "":
		b.WriteString(": now owned by " + e.Owner)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

func (e *LostError) Unwrap() error { return e.Err }

// Conflict marks the error for IsConflict: losing a lease is a lost race.
func (e *LostError) Conflict() bool { return true }

// LeaseLost marks the error for IsLost.
func (e *LostError) LeaseLost() bool { return true }

// IsConflict reports whether err says a lease write lost a compare-and-set
// race (including every error IsLost reports). It looks for a
// Conflict() bool method anywhere in err's chain, so other stores' error
// types can take part.
func IsConflict(err error) bool {
	var c interface{ Conflict() bool }
	return errors.As(err, &c) && c.Conflict()
}

// IsLost reports whether err says the caller no longer owns the lease. It
// looks for a LeaseLost() bool method anywhere in err's chain.
func IsLost(err error) bool {
	var c interface{ LeaseLost() bool }
	return errors.As(err, &c) && c.LeaseLost()
}

// ErrShutdown is the cause (context.Cause) of a worker's context when the
// Manager is stopping gracefully. The worker may still checkpoint what it
// has finished, with a context of its own, until it returns.
var ErrShutdown = errors.New("lease: manager shutting down")

// SplitError is returned by a Worker whose range has split. The Manager
// creates the children, then deletes the parent; see Manager.
type SplitError struct {
	// Children cover the parent's range, e.g. from ForRange(parent.Prefix(),
	// min, max). An empty ID is derived from the parent's prefix and Token;
	// an empty Continuation inherits the parent's last checkpoint; nil
	// Properties inherit the parent's.
	Children []*Lease
}

func (e *SplitError) Error() string {
	toks := make([]string, len(e.Children))
	for i, c := range e.Children {
		toks[i] = c.Token
	}
	return "lease: range split into " + strings.Join(toks, ", ")
}
