// Package replica is where instadump keeps copies of its snapshots off
// the machine: a Store is a flat namespace of immutable objects under
// keys like "a/b/000017.seg", with five operations (Put, Create, Get,
// List, Delete). NewDir gives a Store in a directory, such as a mounted
// network filesystem; package replica/s3 gives one in S3-compatible object
// storage; package replica/replicatest holds the conformance tests every
// Store must pass and a fault-injecting Store for testing what uses one.
//
//	st, err := replica.NewDir("/mnt/backup/db1")
//	err = st.Put(ctx, "seg/000017.seg", f, size)          // replaces
//	err = st.Create(ctx, "snap/000017", r, n)             // errors.Is(err, replica.ErrExists) if taken
//	rc, err := st.Get(ctx, "seg/000017.seg")              // errors.Is(err, replica.ErrNotFound) if absent
//	objs, err := st.List(ctx, "snap/")                    // sorted by key
//	err = st.Delete(ctx, "seg/000012.seg")                // absent is fine
//
// # What a Store guarantees
//
// An object is all or nothing: a reader sees the whole old object or the
// whole new one, never a part, and a failed or cancelled Put leaves the
// old one. Once Put or Create returns nil the object is durable as the
// store defines it (fsynced for a directory; acknowledged for S3).
// Create is a conditional create: of many writers racing to Create one
// key, exactly one succeeds, so a Create can claim a location for one
// writer. Keys follow CheckKey's rules in every store.
//
// # Errors
//
// Errors say what failed, on which key and in which store (its String),
// and wrap a sentinel where one fits:
//
//	ErrNotFound       Get of an absent key
//	ErrExists         Create of a taken key
//	ErrInvalidKey     a key or prefix that breaks CheckKey's rules
//	ErrUnavailable    may pass: the server is down, slow, overloaded (retried already where the store retries)
//	ErrMisconfigured  will not pass by itself: credentials, permissions, a missing bucket or directory
//
// A failed operation whose cause is none of these (an I/O error, say) is
// of unknown duration; context errors are wrapped as they are, so
// errors.Is(err, context.DeadlineExceeded) holds after a deadline.
//
// # Layout of a replicated DB
//
// instadump's shipper (package engine) keeps a DB's snapshots in a Store
// under these keys (numbers are decimal; NNN...N is zero-padded to 20
// digits, so keys sort as their numbers do):
//
//	owner/NNNNNNNNNNNNNNNNNNNN                  owner record N: who replicates here
//	<lineage>/seg/NNNNNN-<tag>.seg              a segment file, byte for byte
//	<lineage>/snap/NNNNNNNNNNNNNNNNNNNN         the commit object of snapshot N
//
// A lineage is one history of a DB (32 hex digits of a random Lineage):
// made when a DB first replicates, and anew for every restored copy, so
// two histories never share a key. A segment's key carries its ID (as in
// the DB directory) and its tag, the checksum in its trailer: two
// segments with the same key hold the same bytes. Segments are uploaded
// first; then the commit object, created conditionally (Create), commits
// the snapshot: a commit object exists only once every segment it lists
// is in the store, and of two writers racing for one snapshot ID, one
// wins. Objects are never changed once written; retention deletes commit
// objects first, then the segments no kept commit object lists.
//
// The owner record with the highest number owns the location: only its
// lineage ships there. The first DB to replicate to an empty location
// creates owner record 1; a DB restored from the location takes over by
// creating the next one, naming its parent (the lineage that owned the
// location when it was restored) and its fork (the snapshot it was
// restored from, which is on the parent's timeline, though perhaps of a
// lineage before it). The location's timeline is then the owner's
// snapshots, then its parent's up to the fork, and so on up the chain of
// owners.
//
// # Commit objects
//
// All integers are little-endian and of the exact width shown. These
// layouts are part of the format and must not change; a new layout gets
// a new version.
//
//	 0  32  header: magic "\x89IDSNP\r\n" (89 49 44 53 4E 50 0D 0A), format
//	        version (2 bytes, 1), 6 zero bytes, the snapshot ID (8 bytes),
//	        xxhash64 of bytes 0..24 (the header of internal/fileheader)
//	32  16  lineage
//	48   8  previous: the snapshot of the commit object this one follows
//	        in its lineage, 0 for none
//	56   8  checksum of that object (its last 8 bytes), 0 for none
//	64   8  base: the snapshot of the full commit object this one's chain
//	        of deltas starts from (its own ID when it is full)
//	72   4  S, the number of segments, at most MaxCommitSegments
//	76   4  L, the length of the record, 1 to 1 GiB
//	80  32S segment list, by ID ascending, each: ID (8), size (8), tag (8),
//	        zero (8)
//	  .  L  the snapshot as a manifest record payload (package manifest's
//	        encoding, with its tags): full, or a delta against the
//	        previous object's snapshot; every segment its states name is
//	        in the list, and the list is every segment the snapshot uses
//	  .  8  xxhash64 of every byte before
//
// The object's size is exactly 80 + 32S + L + 8. A delta has a previous
// object and a base no later than it; a full object's base is itself. A
// reader restores snapshot N by following previous links from N's object
// back to its base, checking each link's checksum, and applying the
// records from the base on.
//
// # Owner records
//
//	 0  32  header: magic "\x89IDOWN\r\n" (89 49 44 4F 57 4E 0D 0A), format
//	        version (1), zero, the record's number N, xxhash64 of 0..24
//	32  16  lineage of the owner
//	48  16  parent lineage, zero for none
//	64   8  fork: the snapshot of the parent's timeline the owner
//	        continues from, 0 for none (0 exactly when the parent is zero)
//	72   8  time it was made, nanoseconds since 1970-01-01 UTC
//	80   8  xxhash64 of bytes 0..80
//
// DecodeCommit and DecodeOwner check every length against the bytes at
// hand before they use it, and never panic.
//
// # Security
//
// A Store trusts its location: whoever can write there can replace any
// object, so what is read back must be verified (instadump's segments and
// manifests carry checksums). Keys cannot name anything outside the store.
// String and errors never contain credentials.
package replica
