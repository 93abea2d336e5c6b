// Package manifest reads and writes the instadump manifest: the log of
// commit records that says which snapshots exist and where every state's
// value of each one lives, and the CURRENT file that names the live log.
//
// It is a format package: it encodes, frames, checksums and decodes
// records, and knows nothing of segments' contents or of the engine that
// folds records into snapshots.
//
// # Usage
//
//	w, err := manifest.Create(f, 4)         // a new MANIFEST-000004
//	_, err = w.Append(manifest.Record{...}) // a full record first
//	err = w.Sync()                          // the commit point
//
//	log, err := manifest.Replay(f, size, "MANIFEST-000004")
//	// log.Records, in order; log.Tail says how the file ended.
//
// # Format
//
// All fixed-width integers are little-endian. "uvarint" is
// encoding/binary's unsigned varint, "varint" its zig-zag signed one.
// These constants are part of the wire format and must not change.
//
// A manifest file is a header followed by records:
//
//	+--------+----------+----------+-----+
//	| header | record 0 | record 1 | ... |
//	+--------+----------+----------+-----+
//
// Header, 32 bytes (layout frozen across versions):
//
//	 0  8  magic "\x89IDMAN\r\n" (89 49 44 4D 41 4E 0D 0A)
//	 8  2  format version: 2 (this package writes 2, reads 1 and 2)
//	10  6  zero (reserved)
//	16  8  file number (the N of MANIFEST-N)
//	24  8  xxhash64 of bytes 0..24
//
// Version 2 added map states (state tags 9 to 12). A version 1 file holds
// none; a version 1 reader refuses a version 2 file by its header, and a
// map state anywhere by its required tags, so a map is never misread as
// something else.
//
// Record frame:
//
//	 0  4  record magic D8 49 44 52
//	 4  4  payload length L, 1 <= L <= MaxRecordSize (1 GiB)
//	 8  8  xxhash64 of bytes 4..8 followed by the payload
//	16  L  payload
//
// Payload: a kind byte, then fields until the end of the payload.
//
//	0  1  kind: 1 = full (the whole snapshot), 2 = delta (changes
//	      against the record before it)
//	1     fields, each: tag (uvarint), length (uvarint), value
//
// Record fields:
//
//	tag 1  snapshot ID, uvarint; required; IDs strictly increase
//	tag 2  time, varint nanoseconds since 1970-01-01 UTC; required
//	tag 3  state (repeated): a value written or carried forward;
//	       its value is itself a list of fields, below
//	tag 4  removed state name (repeated; delta only)
//	tag 5  next segment ID, uvarint: no segment at or above it is in
//	       use (optional)
//	tag 6  bytes written: the size of the segment this snapshot wrote,
//	       uvarint (optional; absent when it wrote none)
//	tag 7  oldest retained snapshot: the writer keeps snapshots from this
//	       ID on (uvarint, at most the record's ID; optional). Readers
//	       drop older snapshots: their segments may be deleted.
//
// State fields (the value of a tag 3 field):
//
//	tag 1   name, 1 to 1024 bytes (required); for a value state also
//	        the name of its entry in the segment
//	tag 2   segment ID, uvarint, not zero       } value states only,
//	tag 3   offset of the value, uvarint        } all required there:
//	tag 4   stored length, uvarint              } where the value
//	tag 5   raw length, uvarint                 } lives
//	tag 6   xxhash64 of the stored bytes, 8 bytes
//	tag 7   xxhash64 of the raw bytes, 8 bytes
//	tag 8   ID of the snapshot that last wrote this state, uvarint
//	        (required, at most the record's snapshot ID)
//	tag 9   kind, uvarint: 1 = value (the default when absent), 2 = map
//	tag 10  map base part (repeated, at least one; maps only): a
//	        location, below
//	tag 11  map delta (repeated, oldest first; maps only): a location
//	tag 12  map entry count, uvarint (required for maps)
//	tag 64  schema version of the stored value, uvarint (optional,
//	        0 when absent)
//
// Location fields (the value of a tag 10 or 11 field), all required:
//
//	tag 1  entry name in the segment, 1 to 1024 bytes
//	tag 2  segment ID, uvarint, not zero
//	tag 3  offset, uvarint
//	tag 4  stored length, uvarint
//	tag 5  raw length, uvarint
//	tag 6  xxhash64 of the stored bytes, 8 bytes
//	tag 7  xxhash64 of the raw bytes, 8 bytes
//
// A map state is its base (the whole map, cut into parts that load in
// parallel) followed by its chain of deltas (the keys set and deleted by
// each later save), all located by the fields above; what the bytes at
// each location hold is the business of the layer above.
//
// Tags 1 to 63 must be understood: a reader that meets one it does not
// know fails with ErrUnsupportedVersion (the record was written by a newer
// instadump with a field that matters). Tags 64 and above may be skipped
// by a reader that does not know them. A field other than a repeated one
// appearing twice is corruption.
//
// The first record of a file is full. A delta record lists only the
// states whose location changed and the states removed; every other state
// keeps its location from the record before. Writers keep replay bounded
// by rolling over to a new file (whose first record is full) when a file
// grows past a limit.
//
// CURRENT is a small text file naming the live manifest, replaced
// atomically by rename and never edited:
//
//	instadump CURRENT 1\n            magic and version
//	MANIFEST-000004\n                the live manifest
//	xxh64 0123456789abcdef\n         xxhash64 of the two lines above
//
// # Torn tails and corruption
//
// Replay reads records until the end of the file. A frame that is cut
// short, zeroed or has a bad magic or length, with no valid frame
// anywhere after it, is a torn tail: the remains of an append a crash
// interrupted. So is a frame that fails its checksum with a zeroed end
// or a zeroed 512-byte sector inside it (the size of an append reached
// the disk, some of its data did not). Replay reports a torn tail (Tail,
// TailErr) and returns the records before it; whoever appends next must
// not append after it (instadump starts a new manifest instead).
//
// A last frame that is complete to its length and fails its checksum
// otherwise is reported the same way but as TailDamaged: a record
// written whole and damaged since, whose snapshot may have been
// acknowledged. A reader must not take it for the end of a crash
// (instadump's Open fails unless told to fall back, and then keeps what
// the record may name aside).
//
// TailDamaged is not the whole test for damage to a last record. It
// finds damage to the frame's checksum field and to its payload (but for
// damage that zeroes the frame's last byte, or a whole sector in it:
// TailZeroed), not to the frame's first 8 bytes: its magic and length
// are what tell a record from the remains of a crash, and damage there
// reads as those remains. A flipped bit in the last frame's magic reads
// as TailGarbage; in its length, as TailGarbage (a length of 0 or over
// MaxRecordSize), TailTruncated (a length past the end of the file), or,
// for a shorter length, TailDamaged, or TailZeroed when the shortened
// frame ends on a zero byte. A record read as torn is ignored: the
// snapshot before it is the last one, as after a crash, and nothing says
// it was damage. Telling the two apart would need to know that no crash
// leaves such bytes, which not every filesystem promises (an interrupted
// append can expose stale blocks), so Replay does not guess. The limit
// is the last record's 8 bytes: the same damage to a record followed by
// a valid one is corruption, below.
//
// A bad frame followed by a valid one is corruption: Replay fails with
// an error wrapping ErrCorrupt naming the file and offset. A frame whose
// checksum holds but whose payload does not decode is corruption too.
//
// # Security
//
// A manifest is trusted to be a file instadump wrote; checksums detect
// damage, not forgery. Every length is checked against the bytes at hand
// before use, so Replay allocates at most a small multiple of the size of
// the file and never panics. Looking for a valid frame after a bad one
// can take time quadratic in the file size on crafted input; rollover
// keeps real files small.
package manifest
