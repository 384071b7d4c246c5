package lease

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Bookkeeping documents beside a processor's leases, named as in the .NET
// processor. Their IDs do not start with Prefix+Separator, so the balancer
// never sees them.
const (
	infoSuffix = ".info" // exists once the initial leases are complete
	lockSuffix = ".lock" // held by the instance creating them
)

// bootstrap returns once "{Prefix}.info" exists, creating the initial leases
// first if no other instance is doing so and none exist.
func (m *Manager) bootstrap(ctx context.Context) error {
	infoID, lockID := m.cfg.Prefix+infoSuffix, m.cfg.Prefix+lockSuffix
	for {
		ls, err := m.cfg.Store.List(ctx, m.cfg.Prefix+".")
		if err != nil {
			return fmt.Errorf("lease: bootstrap: list: %w", err)
		}
		var lock *Lease
		for _, l := range ls {
			switch l.ID {
			case infoID:
				return nil
			case lockID:
				lock = l
			}
		}
		var mine *Lease
		switch {
		case lock == nil:
			mine, err = m.cfg.Store.Create(ctx, &Lease{ID: lockID, Owner: m.cfg.Owner})
		case lock.Owner == m.cfg.Owner || lock.Expired(m.cfg.Expiry):
			// The lock of a crashed bootstrapper, or our own from before a
			// restart.
			mine, err = m.cfg.Store.Acquire(ctx, lock, m.cfg.Owner, AcquireOptions{Expiry: m.cfg.Expiry})
		}
		switch {
		case mine != nil:
			return m.bootstrapLocked(ctx, mine, lock != nil)
		case err != nil && !IsConflict(err):
			return fmt.Errorf("lease: bootstrap: lock: %w", err)
		}
		m.log.Info("lease: waiting for another instance to create the leases", "lock", lockID)
		t := time.NewTimer(m.cfg.AcquireInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// bootstrapLocked runs under the lock. crashed says the lock was left by a
// bootstrap that did not finish: the leases found are then a partial set to
// complete. Otherwise leases found without ".info" were made by someone else
// (an operator, another tool) and are kept as they are, because adding
// leases for the current ranges beside them could overlap them.
func (m *Manager) bootstrapLocked(ctx context.Context, lock *Lease, crashed bool) (err error) {
	defer func() {
		// On failure too, so that another instance may try at once.
		dctx, cancel := m.opContext()
		defer cancel()
		if derr := m.cfg.Store.Delete(dctx, lock); derr != nil {
			m.log.Warn("lease: bootstrap: deleting the lock failed; it expires", "err", derr)
		}
	}()
	// Look again under the lock: the listing that found no ".info" may
	// predate a whole bootstrap by another instance, lock and all.
	ls, err := m.cfg.Store.List(ctx, m.cfg.Prefix+".")
	if err != nil {
		return fmt.Errorf("lease: bootstrap: list: %w", err)
	}
	existing := 0
	for _, l := range ls {
		switch {
		case l.ID == m.cfg.Prefix+infoSuffix:
			return nil
		case strings.HasPrefix(l.ID, m.cfg.Prefix+Separator):
			existing++
		}
	}
	var leases []*Lease
	if existing == 0 || crashed {
		if leases, err = m.cfg.Bootstrap(ctx); err != nil {
			return fmt.Errorf("lease: bootstrap: %w", err)
		}
	} else {
		m.log.Info("lease: leases exist already; not creating any", "existing", existing)
	}
	n := 0
	for _, l := range leases {
		c := l.Clone()
		if c.ID == "" {
			c.ID = m.cfg.Prefix + Separator + c.Token
		}
		if c.Token == "" || !strings.HasPrefix(c.ID, m.cfg.Prefix+Separator) {
			return fmt.Errorf("lease: bootstrap: lease %q needs a Token and an ID starting with %q", c.ID, m.cfg.Prefix+Separator)
		}
		c.Owner, c.ETag = "", ""
		_, err := m.cfg.Store.Create(ctx, c)
		switch {
		case IsConflict(err):
			// Created by an earlier, interrupted bootstrap: keep it, it may
			// hold progress.
		case err != nil:
			return fmt.Errorf("lease: bootstrap: %w", err)
		default:
			n++
		}
	}
	if _, err := m.cfg.Store.Create(ctx, &Lease{ID: m.cfg.Prefix + infoSuffix}); err != nil && !IsConflict(err) {
		return fmt.Errorf("lease: bootstrap: %w", err)
	}
	m.log.Info("lease: bootstrapped", "created", n, "of", len(leases))
	return nil
}
