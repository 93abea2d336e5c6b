package inspect

import (
	"context"
	"time"

	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/replica"
)

// A replica: the snapshots a DB shipped to a replica.Store (see
// instadump.WithReplica), read without writing anything.

// ReplicaSnapshot describes a snapshot in a replica.
type ReplicaSnapshot struct {
	ID       uint64    `json:"id"`
	Time     time.Time `json:"time"`
	Lineage  string    `json:"lineage"`  // the history it belongs to
	Kind     string    `json:"kind"`     // its commit object: "full", or "delta" on the one before
	States   int       `json:"states"`   // -1 if its commit objects do not say
	Bytes    int64     `json:"bytes"`    // of the segment files it uses
	Segments []uint64  `json:"segments"` // the segment files it uses
	// Problem says why it cannot be restored; empty if it can.
	Problem string `json:"problem,omitempty"`
}

func replicaSnapshots(snaps []engine.ReplicaSnapshot) []ReplicaSnapshot {
	out := []ReplicaSnapshot{}
	for _, s := range snaps {
		r := ReplicaSnapshot{ID: s.ID, Time: s.Time, Lineage: s.Lineage, Kind: "delta", States: s.States, Bytes: s.Bytes, Segments: s.Segments}
		if s.Full {
			r.Kind = "full"
		}
		if r.Segments == nil {
			r.Segments = []uint64{}
		}
		if s.Problem != nil {
			r.Problem = s.Problem.Error()
		}
		out = append(out, r)
	}
	return out
}

// ReplicaSnapshots lists the snapshots of the DB replicated in st, oldest
// first, as Restore sees them: it reads the objects that commit them, not
// their segments.
func ReplicaSnapshots(ctx context.Context, st replica.Store) ([]ReplicaSnapshot, error) {
	snaps, err := engine.ReplicaSnapshots(ctx, st)
	if err != nil {
		return nil, err
	}
	return replicaSnapshots(snaps), nil
}

// VerifyReplica checks every snapshot of the DB replicated in st as a
// restore would, writing no DB: every commit object and every segment,
// downloaded once each into a temporary file and checked byte by byte.
// It returns the snapshots and every problem found, each naming the
// object (an error wrapping ErrCorrupt for damage). progress, if not nil,
// is called as segment bytes are checked.
func VerifyReplica(ctx context.Context, st replica.Store, progress func(done, total int64)) ([]ReplicaSnapshot, []error) {
	snaps, problems := engine.VerifyReplica(ctx, st, progress)
	return replicaSnapshots(snaps), problems
}
