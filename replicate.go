package instadump

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/replica"
)

// Replication: a DB opened WithReplica ships every snapshot it commits to
// a replica.Store (a directory, such as a mounted network filesystem, or
// S3-compatible storage with package replica/s3), in the background;
// Restore writes a DB directory back from one. The layout in the store
// is in package replica's doc; how shipping works, in package engine's
// ship.go.

// WithReplica ships every committed snapshot to s, off the machine, so
// that Restore can bring the DB back after its disk is lost.
//
// Shipping runs behind the saves, in a goroutine of its own: Save never
// waits for the network. After each Save it uploads the segment files
// the newest snapshot needs that the store lacks, then an object that
// commits the snapshot, created conditionally: the store never holds a
// snapshot whose files are not all there. When saves come faster than
// the store takes them, the snapshots in between are skipped. A failure
// that may pass (the server down, slow, answering 5xx) is retried with
// backoff and jitter; one that will not (credentials refused, another DB
// owns the location: ErrFenced) stops shipping. Either is logged and
// reported by ReplicationStatus; local saving goes on. WaitReplicated
// waits until a snapshot is in the store. A DB reopened resumes where the
// store is, uploading nothing it holds.
//
// One DB replicates to a location: the first claims it, and any other is
// fenced (ErrFenced), but a DB restored from the location takes it over,
// and the DB it was restored from is then fenced. The store keeps the
// newest snapshots (WithReplicaRetain) and deletes the rest.
//
// Open fails if the DB's LINEAGE file (the history it continues, written
// when it first replicates) is damaged, or with WithReadOnly.
func WithReplica(s replica.Store) Option { return func(o *options) { o.replica.Store = s } }

// WithReplicaRetain sets how many snapshots the replica keeps: the newest
// n, and the objects that older ones need as the bases of deltas. By
// default (or with n = 0), as many as the DB retains (WithRetain).
func WithReplicaRetain(n int) Option { return func(o *options) { o.replica.Retain = n } }

// WithReplicaGrace lets Close wait up to d for the shipper to finish
// shipping the newest snapshot (say, one WithSaveOnClose just saved). By
// default Close stops shipping at once; what is not yet in the store is
// shipped by the next Open with WithReplica. Use WaitReplicated for a
// guarantee.
func WithReplicaGrace(d time.Duration) Option { return func(o *options) { o.replica.Grace = d } }

// withReplicaRetry sets the backoff between failed shipping rounds
// (tests).
func withReplicaRetry(minWait, maxWait time.Duration) Option {
	return func(o *options) { o.replica.RetryMin, o.replica.RetryMax = minWait, maxWait }
}

// Errors of replication.
var (
	// ErrFenced: another DB owns the replica location: the one that
	// claimed it first, one restored from this DB that took it over, or a
	// copy of this DB's directory that shipped first. This DB stops
	// shipping there; it saves on locally.
	ErrFenced = engine.ErrFenced
	// ErrNotReplicated: WaitReplicated on a DB opened without
	// WithReplica.
	ErrNotReplicated = errors.New("instadump: the DB does not replicate (open it WithReplica)")
)

// WaitReplicated returns nil once snapshot id, or a newer one, is in the
// replica: shipped whole and committed there. id 0 means the DB's newest
// snapshot when WaitReplicated is called. It returns ctx's error if ctx
// ends first, and, once shipping has stopped for good, why: an error
// wrapping ErrFenced, replica.ErrMisconfigured (the store refused the
// credentials, say) or ErrClosed. Failures that may pass do not end the
// wait: ReplicationStatus shows them.
func (db *DB) WaitReplicated(ctx context.Context, id uint64) error {
	if db.opts.replica.Store == nil {
		return fmt.Errorf("%w: %s", ErrNotReplicated, db.Dir())
	}
	return db.eng.WaitReplicated(ctx, id)
}

// ReplicationStatus says how shipping to the replica goes: which
// snapshot the replica holds (Shipped), how far behind it is (Pending,
// Behind, Lag), the last failure (Err), and whether shipping has stopped
// for good (Stopped; Fenced when another DB owns the location). Its
// fields are documented at replica.Status.
type ReplicationStatus = replica.Status

// ReplicationStatus returns the state of shipping to the replica; the
// zero ReplicationStatus if the DB does not replicate.
func (db *DB) ReplicationStatus() ReplicationStatus {
	s, _ := db.eng.ReplicaStatus() // the zero status when not replicating
	return s
}

// RestoreOption chooses what Restore restores.
type RestoreOption func(*restoreOptions)

type restoreOptions struct {
	engine.RestoreOptions
	at, before int // how many times RestoreAt and RestoreBefore were given
}

// RestoreAt restores snapshot id, which the replica must hold. Snapshots
// are numbered from 1: RestoreAt(0) is refused (ErrBadOption), as is
// giving it together with RestoreBefore.
func RestoreAt(id uint64) RestoreOption {
	return func(o *restoreOptions) { o.ID = id; o.at++ }
}

// RestoreBefore restores the newest snapshot saved at or before t. The
// zero time is refused (ErrBadOption), as is giving it together with
// RestoreAt.
func RestoreBefore(t time.Time) RestoreOption {
	return func(o *restoreOptions) { o.Before = t; o.before++ }
}

// check refuses options that cannot mean what the caller wants.
func (o *restoreOptions) check() error {
	switch {
	case o.at > 0 && o.before > 0:
		return fmt.Errorf("%w: Restore was given both RestoreAt and RestoreBefore: give one of them (or neither, for the newest snapshot)", ErrBadOption)
	case o.at > 0 && o.ID == 0:
		return fmt.Errorf("%w: RestoreAt(0): snapshots are numbered from 1; leave RestoreAt out to restore the newest", ErrBadOption)
	case o.before > 0 && o.Before.IsZero():
		return fmt.Errorf("%w: RestoreBefore with the zero time.Time, which no snapshot is saved before: give the time to restore as of, or leave RestoreBefore out to restore the newest", ErrBadOption)
	}
	return nil
}

// Restore writes a snapshot of the DB replicated in s (see WithReplica)
// into dir, a new directory (or an empty one), and returns it: by
// default the newest snapshot whose files are all in the store;
// RestoreAt and RestoreBefore choose an older one. Open then opens dir as
// any DB directory, with the restored snapshot as its only one.
//
// Every checksum of what it fetches is verified (the objects that commit
// the snapshot, every segment's header, trailer and index, every value)
// before it writes dir: it downloads into a temporary directory beside
// dir (".NAME.restore-*"), syncs every file, and renames it into place.
// Into an empty directory that exists (a freshly mounted volume, say),
// the temporary directory is made inside it (".restore-*") and the files
// are moved out of it, CURRENT last. A failure leaves nothing; a crash
// may leave that temporary directory, or files without CURRENT, which
// Open refuses: never a DB that opens with part of the snapshot.
//
// Saving on, the restored DB is a new lineage: opened WithReplica on s,
// it takes the location over (even when restored from an older snapshot
// than the owner's newest), and the DB that owned it is fenced there
// (ErrFenced).
//
// Errors: ErrBadOption for RestoreAt(0), RestoreBefore of the zero
// time, or both given; ErrNoSnapshot when the store holds no complete snapshot, or
// not the one asked for; ErrCorrupt (naming the object) when what it
// fetched is damaged; the store's errors (replica.ErrUnavailable,
// replica.ErrMisconfigured) when it cannot read.
func Restore(ctx context.Context, s replica.Store, dir string, opts ...RestoreOption) (Snapshot, error) {
	var o restoreOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.check(); err != nil {
		return Snapshot{}, err
	}
	snap, err := engine.Restore(ctx, s, dir, o.RestoreOptions)
	if err != nil {
		return Snapshot{}, err
	}
	return toSnapshot(snap), nil
}

// ReplicaSnapshot describes a snapshot in a replica.
type ReplicaSnapshot struct {
	ID      uint64
	Time    time.Time
	States  int    // how many states it holds; -1 if its objects do not say
	Bytes   int64  // of the segment files it uses
	Lineage string // the history it belongs to
	Full    bool   // its commit object holds it whole (not a delta)
	// Problem says why it cannot be restored (an object missing or
	// damaged, as far as the listing and its commit objects tell), or nil.
	Problem error
}

// ReplicaSnapshots lists the snapshots in a replica, oldest first, as
// Restore sees them. It reads the objects that commit them, not their
// segments: a full check is what instadump-inspect replica-verify does.
func ReplicaSnapshots(ctx context.Context, s replica.Store) ([]ReplicaSnapshot, error) {
	snaps, err := engine.ReplicaSnapshots(ctx, s)
	if err != nil {
		return nil, err
	}
	out := make([]ReplicaSnapshot, len(snaps))
	for i, r := range snaps {
		out[i] = ReplicaSnapshot{ID: r.ID, Time: r.Time, States: r.States, Bytes: r.Bytes, Lineage: r.Lineage, Full: r.Full, Problem: r.Problem}
	}
	return out, nil
}
