// Package segment reads and writes instadump segment files.
//
// A segment holds the values of the states one save wrote: each value is
// the state's msgpack encoding, cut into chunks that are zstd-compressed
// independently (so every core compresses and decompresses a large value),
// with an xxhash64 of its stored bytes and of its raw bytes. An index maps
// state names to values and a fixed-size trailer locates and checksums the
// index, so a reader can find, read and verify one state without reading
// the others. A segment is written once, synced, and never changed.
//
// # Usage
//
//	w, err := segment.NewWriter(f, id, segment.Options{})
//	err = w.Add("counter", msgpackBytes) // as many as needed; names unique
//	vw, err := w.Value("big")            // or stream one: vw.Write(...), vw.Close()
//	info, err := w.Finish()              // then f.Sync(), dir sync, commit
//	w.Abort()                            // or give up: nothing more is written
//
//	r, err := segment.Open(f, size, "000017.seg")
//	e, ok := r.Find("counter")
//	raw, err := r.Read(e)          // verified raw bytes
//	err = r.Check(e)               // verified, without holding the raw value
//	stored, err := r.ReadStored(e) // verified stored bytes, for w.AddStored
//	err = r.Verify()               // every byte of the file
//
// # Format
//
// All integers are little-endian and of the exact width shown; offsets
// are from the start of the file. These constants are part of the wire
// format and must not change: the format version (1) says what follows
// the header, and a new layout gets a new version.
//
//	+--------+---------+---------+-----+---------+-------+---------+
//	| header | value 0 | value 1 | ... | value n | index | trailer |
//	+--------+---------+---------+-----+---------+-------+---------+
//	  32 B      variable, tiling [32, index offset)  var.    48 B
//
// Header, 32 bytes (its layout is frozen across versions, so any version
// can be told apart from damage):
//
//	 0  8  magic "\x89IDSEG\r\n" (89 49 44 53 45 47 0D 0A)
//	 8  2  format version, 1
//	10  2  flags, zero (reserved)
//	12  4  zero (reserved)
//	16  8  segment ID (the number in the file name, NNNNNN.seg)
//	24  8  xxhash64 of bytes 0..24
//
// Value: the chunks of one state's raw bytes, in order; zero chunks for an
// empty value. Each chunk:
//
//	 0  1  codec: 0 = none (the stored bytes are the raw bytes),
//	          1 = zstd (the stored bytes are one zstd frame)
//	 1  3  zero (reserved)
//	 4  4  raw length R, 1 <= R <= MaxChunk (16 MiB)
//	 8  4  stored length S, 1 <= S <= R (S = R for codec none)
//	12  S  stored bytes
//
// The writer cuts values into chunks of Options.ChunkSize (4 MiB by
// default) and stores a chunk raw when zstd does not make it smaller, or
// when three samples of it (start, middle, end) do not compress: random
// bytes are not compressed whole only to be stored raw.
//
// Index: a count, then the entries sorted by name (bytewise, no two
// alike):
//
//	0  4  entry count N
//	4     N entries, each:
//	        0  2  name length L, 1 <= L <= MaxNameLen (1024)
//	        2  2  zero (reserved)
//	        4  8  offset of the value
//	       12  8  stored length of the value (chunk headers included)
//	       20  8  raw length of the value (sum of its chunks' R)
//	       28  8  xxhash64 of the value's stored bytes
//	       36  8  xxhash64 of the value's raw bytes
//	       44  L  name, UTF-8
//
// Sorted by offset, the values tile [32, index offset) with no gap and no
// overlap, so the checksums together cover every byte of the file.
//
// Trailer, the last 48 bytes:
//
//	 0  8  index offset
//	 8  8  index length
//	16  8  xxhash64 of the index
//	24  8  segment ID (equal to the header's)
//	32  8  xxhash64 of bytes 0..32 of the trailer
//	40  8  magic "\x89IDEND\r\n" (89 49 44 45 4E 44 0D 0A)
//
// # Errors
//
// Every problem found in a file is an error wrapping ErrCorrupt (a
// *CorruptError naming the file and the offset), or, for a header whose
// checksum holds but whose version is newer than this build, one wrapping
// ErrUnsupportedVersion. Bad magic also matches ErrBadMagic, checksum
// mismatches ErrChecksum.
//
// # Security
//
// A segment is trusted to be a file instadump wrote; its checksums detect
// damage, not forgery. Every length and offset is checked against the
// file size (and the index against its checksum) before it is used, and
// decoding never panics: should the zstd decoder panic on a crafted
// chunk, the panic is recovered where the chunk is decompressed, on any
// path, into an ErrCorrupt naming the file and the chunk's offset, and
// that decoder is not used again. A raw length is trusted for an allocation only
// up to 64 times the value's stored length (plus one chunk); past that
// the reader allocates as chunks actually decompress, so a file whose
// checksums were forged to declare huge values costs what its bytes
// yield, not what they declare. A crafted file can still hold chunks that
// truly decompress to many times their size, as any compressed format
// can; the zstd decoder's memory is capped at MaxChunk per chunk.
package segment
