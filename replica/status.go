package replica

import "time"

// Status says how a DB's shipping to its replica goes, as
// instadump.DB.ReplicationStatus reports it: which snapshot the replica
// holds, how far behind it is, the last failure, and whether shipping has
// stopped for good.
type Status struct {
	// Store describes the replica (its String, never with a secret);
	// empty when the DB does not replicate. Lineage is this DB's history
	// in it.
	Store   string
	Lineage string
	// Shipped is the newest snapshot in the replica (0: none yet), saved
	// at ShippedTime and in the replica since ShippedAt.
	Shipped     uint64
	ShippedTime time.Time
	ShippedAt   time.Time
	// How far behind the replica is: Current is the newest local
	// snapshot, Pending how many local snapshots are newer than Shipped,
	// Behind the bytes the replica lacks to hold Current, and Lag how long
	// ago the oldest retained snapshot not yet shipped was saved (0 when
	// up to date).
	Current uint64
	Pending int
	Behind  int64
	Lag     time.Duration
	// Err is the last failure, at ErrTime; nil once shipping succeeds
	// again.
	Err     error
	ErrTime time.Time
	// Stopped is non-nil once shipping has stopped for good: fenced,
	// refused by the store (ErrMisconfigured), or the DB closed.
	// Fenced is set when that is because another DB owns the location
	// (instadump.ErrFenced).
	Stopped error
	Fenced  bool
}
