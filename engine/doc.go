// Package engine is instadump's storage engine: the directory, its lock,
// the commit protocol, recovery, retention and garbage collection. It
// stores opaque byte values (msgpack encodings) under state names; the
// root package turns Go values into those bytes and back.
//
// # Directory
//
//	LOCK              flock'ed by the process that has the DB open
//	CURRENT           names the live manifest; replaced by rename
//	MANIFEST-000004   the live manifest (package manifest)
//	000017.seg        segments (package segment), immutable
//	*.tmp             a file being written; removed by recovery
//	*.broken          damaged files moved aside by fallback recovery
//
// # Commit protocol
//
// Commit is the order below, and the order is the guarantee:
//
//  1. Write the changed values to a new segment; fsync it; fsync the
//     directory, so that the segment's name is durable before anything
//     points at it. A failure here abandons the segment (it is removed) and
//     leaves the DB as it was.
//  2. Append the commit record to the manifest and fsync it. Only now does
//     Commit return nil. A failure here is sticky: after a failed fsync the
//     file's state is unknown, so every later Commit fails with the same
//     error until the DB is reopened.
//  3. Delete the segments no retained snapshot references; roll the
//     manifest over when it has grown past its limit. A crash here leaves
//     garbage, never damage.
//
// Rollover writes MANIFEST-N+1 (a full record of the oldest retained
// snapshot, then deltas), fsyncs it and the directory, writes CURRENT.tmp,
// fsyncs it, renames it over CURRENT, fsyncs the directory and deletes the
// old manifest.
//
// # Recovery
//
// Open takes the lock, reads CURRENT, replays the manifest it names (a
// torn tail is ignored, never appended to), checks the segments of the
// retained snapshots, removes orphan segments and temp files, and then
// always starts a new manifest by rollover: this process never appends to
// a file whose unsynced bytes an earlier process may have left in an
// unknown state (RocksDB #6316). If the current snapshot's data is
// damaged, Open fails with ErrCorrupt, or with Options.Fallback uses the
// newest retained snapshot whose data is intact, moves the damaged files
// aside as NAME.broken and says so in Report and in the log.
package engine
