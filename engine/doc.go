// Package engine is instadump's storage engine: the directory, its lock,
// the commit protocol, recovery, retention and garbage collection. It
// stores opaque values (msgpack encodings) under state names, each state
// either one value or a map's base (in parts) and chain of deltas; the
// root package turns Go values into those bytes and back, and talks to
// the engine one way: it hands Commit what to write and gets the engine's
// own Snapshot back.
//
// Who uses it: package instadump (read-write), and tools through a
// read-only Engine (package inspect, instadump-inspect): Options.ReadOnly
// takes no lock, repairs nothing, writes nothing, and holds every file it
// reads open, so it shows one consistent view beside an owner that saves.
//
// # Directory
//
//	LOCK              flock'ed by the process that has the DB open
//	CURRENT           names the live manifest; replaced by rename
//	MANIFEST-000004   the live manifest (package manifest)
//	000017.seg        segments (package segment), immutable
//	CURRENT.tmp       CURRENT's replacement before its rename; removed by recovery
//	*.broken          files recovery moved aside, never deleted: damaged, or named only by records it did not load
//	LINEAGE           the history a replicating DB continues (lineage.go)
//
// # Snapshots (snapshot.go)
//
// The engine keeps the current snapshot's states in full and, for each
// retained snapshot, only what its commit changed and what those states
// were before: a commit costs what it changed, and any retained snapshot
// can be rebuilt from the current one (States, Lookup).
//
// # Open and recovery (engine.go, recover.go, check.go)
//
// Open takes the lock, reads CURRENT, replays the manifest it names (a
// torn tail is ignored, never appended to) and folds its records into the
// retained snapshots: from the last record's oldest retained snapshot on,
// so a reader sees the retention the writer used. It checks the segments
// of the current snapshot, removes what no retained snapshot uses
// (segments, old manifests, CURRENT.tmp: only the engine's own names),
// and then always starts a new manifest by rollover: this process never
// appends to a file whose unsynced bytes an earlier process may have left
// in an unknown state (RocksDB #6316).
//
// If the current snapshot's data is damaged, Open fails with ErrCorrupt,
// or with Options.Fallback uses the newest retained snapshot whose every
// value reads intact; if CURRENT or the manifest is damaged, the newest
// manifest in the directory that replays (or the part of one before the
// damage); if the manifest's last record is damaged (Report.DamagedTail),
// the snapshot before it. It moves aside as NAME.broken the damaged
// files and every segment no retained snapshot uses (records it did not
// load or could not read may name them: they may hold the only copy of
// intact values), never deleting them, and says so in Report and in the
// log; a segment an older retained snapshot uses stays, as that snapshot
// does. Only without a fallback are unused segments removed: those of a
// save that crashed before its commit record, and those of snapshots
// retention dropped.
//
// A manifest with no snapshot beside segments is a case of its own
// (noSnapshot): a crash during a first save leaves one segment, numbered
// after those earlier crashed first saves left (moved aside), and it is
// moved aside too; any other segments, or any with no CURRENT and no
// manifest, no crash leaves, and Open fails with ErrCorrupt, touching
// nothing, rather than start empty. A strict Open that fails touches no
// file.
//
// # Commit (commit.go)
//
// Commit is the order below, and the order is the guarantee:
//
//  1. Write the values to a new segment; fsync it; fsync the directory,
//     so that the segment's name is durable before anything points at
//     it. A failure here abandons the segment (it is removed) and leaves
//     the DB as it was.
//  2. Append the commit record (the states it changed or dropped) to the
//     manifest and fsync it: the commit point. A failure here is sticky:
//     after a failed fsync the file's state is unknown, so every later
//     Commit fails with the same error until the DB is reopened.
//  3. Install the snapshot: it is current, and retention drops the
//     oldest.
//  4. Delete the segments no retained snapshot uses; roll the manifest
//     over when it has grown past its limit. A crash here leaves garbage,
//     never damage.
//
// # Rollover (rollover.go)
//
// Rollover writes MANIFEST-N+1 (a full record of the oldest retained
// snapshot, then each later one's delta), fsyncs it and the directory,
// writes CURRENT.tmp, fsyncs it, renames it over CURRENT, fsyncs the
// directory and deletes the old manifest.
//
// # Readers (readers.go)
//
// Every segment in use is opened once, checked and kept open, counted
// while read: garbage collection deletes a segment's file at once but
// closes it only when its last reader is done, so a read that found a
// value in a retained snapshot (Hold) finishes whatever commits do.
//
// # Read-ahead (readahead.go)
//
// With Options.ReadAhead, Open starts one goroutine that reads, verifies
// and decompresses the current snapshot's values in the order they lie
// in the segments, holding at most ReadAhead bytes nobody has claimed;
// Read takes a value from it (waiting if its read is under way) once,
// and reads for itself what it has not reached. The program's loads
// decode on one core while the next values are read on another. It
// stops at the first commit and at Close.
//
// # Garbage collection (gc.go)
//
// Live bytes are counted per segment as values enter and leave the
// retained snapshots; a segment with none is deleted. When more than half
// of the bytes of the segments in use are dead, the next commit rewrites
// every value of the current snapshot into one fresh segment, copying
// stored bytes without recompressing them (compaction).
//
// # Replication (ship*.go, location.go, storeio.go, restore.go, replicaverify.go, lineage.go)
//
// With Options.Replica, a shipper goroutine copies what each commit made
// durable to a replica.Store: Commit only tells it (never blocking) that
// a new snapshot is current. A round holds the newest snapshot's segments
// open (so garbage collection cannot take them away mid-upload), uploads
// the ones the store lacks, then creates the snapshot's commit object
// conditionally, with a List of the lineage right before and right after
// that shows no commit object it did not make (a copy of the directory
// shipping other IDs: alone, confirm), and applies the store's
// retention. Ownership of the location (owner records), lineages, the
// layout and the commit object's encoding are in package replica's doc. Restore reads a location back,
// verifies everything it fetched and writes a directory Open recovers as
// any other, with a LINEAGE naming a new lineage.
//
// # Tools (tools.go)
//
// A read-only Engine gives tools the manifest as replayed, the segment
// files, live bytes per segment, and Verify: every retained snapshot
// against its segments and every byte of every segment they use.
package engine
