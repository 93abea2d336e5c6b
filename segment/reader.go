package segment

import (
	"fmt"
	"io"
	"runtime"
	"sort"

	"github.com/cespare/xxhash/v2"
	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/internal/par"
	"github.com/klauspost/compress/zstd"
)

// Package errs's causes, as this file names them.
var (
	errBadMagic = errs.ErrBadMagic
	errChecksum = errs.ErrChecksum
)

// Reader reads a segment through an io.ReaderAt. It is safe for
// concurrent use.
type Reader struct {
	r        io.ReaderAt
	size     int64
	file     string
	id       uint64
	indexOff int64
	entries  []Entry // sorted by name
}

// readAt reads exactly len(p) bytes at off, which the caller has checked
// lie within the file.
func (r *Reader) readAt(p []byte, off int64) error {
	n, err := r.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		// The file is shorter than the size we were given.
		return errs.Corruptf(r.file, off+int64(n), "file ends early: read %d of %d bytes at offset %d", n, len(p), off)
	}
	return fmt.Errorf("segment: reading %s at offset %d: %w", r.file, off, err)
}

// Open checks the header, trailer and index of the segment in r, of size
// bytes, and returns a Reader. file names the segment in errors. It reads
// only the header, the trailer and the index.
func Open(r io.ReaderAt, size int64, file string) (*Reader, error) {
	sr := &Reader{r: r, size: size, file: file}
	if size < HeaderSize {
		if size >= 8 {
			if err := sr.readAt(make([]byte, 8), 0); err != nil {
				return nil, err
			}
		}
		return nil, errs.Corruptf(file, 0, "file is %d bytes, shorter than a segment header (%d)", size, HeaderSize)
	}
	var h [HeaderSize]byte
	if err := sr.readAt(h[:], 0); err != nil {
		return nil, err
	}
	id, err := parseHeader(h[:], file)
	if err != nil {
		return nil, err
	}
	sr.id = id
	if size < MinFileSize {
		return nil, errs.Corruptf(file, size, "file is %d bytes, shorter than an empty segment (%d): cut short", size, MinFileSize)
	}
	toff := size - TrailerSize
	var t [TrailerSize]byte
	if err := sr.readAt(t[:], toff); err != nil {
		return nil, err
	}
	if string(t[40:]) != TrailerMagic {
		return nil, errs.CorruptCause(errBadMagic, file, toff+40, "bad trailer magic % x: the file is cut short or damaged", t[40:])
	}
	if got, want := le.Uint64(t[32:]), xxhash.Sum64(t[:32]); got != want {
		return nil, errs.CorruptCause(errChecksum, file, toff+32, "trailer checksum %016x, want %016x", got, want)
	}
	ioff, ilen := le.Uint64(t[0:]), le.Uint64(t[8:])
	if ioff < HeaderSize || ilen < 4 || ioff > uint64(toff) || ilen != uint64(toff)-ioff {
		return nil, errs.Corruptf(file, toff, "index at %d length %d does not end at the trailer (%d)", ioff, ilen, toff)
	}
	if tid := le.Uint64(t[24:]); tid != id {
		return nil, errs.Corruptf(file, toff+24, "trailer segment ID %d, header says %d", tid, id)
	}
	index := make([]byte, ilen) // bounded by the file size, checked above
	if err := sr.readAt(index, int64(ioff)); err != nil {
		return nil, err
	}
	if got, want := xxhash.Sum64(index), le.Uint64(t[16:]); got != want {
		return nil, errs.CorruptCause(errChecksum, file, int64(ioff), "index checksum %016x, want %016x", got, want)
	}
	sr.indexOff = int64(ioff)
	if sr.entries, err = sr.parseIndex(index); err != nil {
		return nil, err
	}
	return sr, nil
}

func (r *Reader) parseIndex(index []byte) ([]Entry, error) {
	n := le.Uint32(index)
	// Every entry takes at least EntryHeaderSize+1 bytes: don't trust n
	// for more than that.
	if uint64(n) > uint64(len(index)-4)/(EntryHeaderSize+1) {
		return nil, errs.Corruptf(r.file, r.indexOff, "index claims %d entries in %d bytes", n, len(index))
	}
	entries := make([]Entry, 0, n)
	pos := 4
	for i := uint32(0); i < n; i++ {
		at := r.indexOff + int64(pos)
		if len(index)-pos < EntryHeaderSize {
			return nil, errs.Corruptf(r.file, at, "index entry %d cut short", i)
		}
		h := index[pos : pos+EntryHeaderSize]
		l := int(le.Uint16(h[0:]))
		if l == 0 || l > MaxNameLen || len(index)-pos-EntryHeaderSize < l {
			return nil, errs.Corruptf(r.file, at, "index entry %d: bad name length %d", i, l)
		}
		if le.Uint16(h[2:]) != 0 {
			return nil, errs.Corruptf(r.file, at+2, "index entry %d: reserved bytes are not zero", i)
		}
		e := Entry{
			Name:      string(index[pos+EntryHeaderSize : pos+EntryHeaderSize+l]),
			Offset:    int64(le.Uint64(h[4:])),
			StoredLen: int64(le.Uint64(h[12:])),
			RawLen:    int64(le.Uint64(h[20:])),
			StoredSum: le.Uint64(h[28:]),
			RawSum:    le.Uint64(h[36:]),
		}
		if err := r.checkBounds(e, at); err != nil {
			return nil, err
		}
		if i > 0 && e.Name <= entries[i-1].Name {
			return nil, errs.Corruptf(r.file, at, "index entry %d (%q) is not after %q", i, e.Name, entries[i-1].Name)
		}
		entries = append(entries, e)
		pos += EntryHeaderSize + l
	}
	if pos != len(index) {
		return nil, errs.Corruptf(r.file, r.indexOff+int64(pos), "%d bytes after the last index entry", len(index)-pos)
	}
	// The values must tile [HeaderSize, indexOff): every byte is then
	// covered by a checksum.
	byOff := make([]Entry, len(entries))
	copy(byOff, entries)
	sort.Slice(byOff, func(i, k int) bool { // empty values first at an offset
		a, b := byOff[i], byOff[k]
		return a.Offset < b.Offset || (a.Offset == b.Offset && a.StoredLen < b.StoredLen)
	})
	next := int64(HeaderSize)
	for _, e := range byOff {
		if e.Offset != next {
			return nil, errs.Corruptf(r.file, next, "values do not tile the file: value %q starts at %d, want %d", e.Name, e.Offset, next)
		}
		next += e.StoredLen
	}
	if next != r.indexOff {
		return nil, errs.Corruptf(r.file, next, "values end at %d but the index starts at %d", next, r.indexOff)
	}
	return entries, nil
}

// checkBounds checks that e lies within the value area. at is where e was
// found, for errors.
func (r *Reader) checkBounds(e Entry, at int64) error {
	if e.Offset < HeaderSize || e.StoredLen < 0 || e.RawLen < 0 || e.Offset > r.indexOff || e.StoredLen > r.indexOff-e.Offset {
		return errs.Corruptf(r.file, at, "value %q at %d length %d lies outside the values [%d, %d)", e.Name, e.Offset, e.StoredLen, HeaderSize, r.indexOff)
	}
	// Each chunk header (12 bytes) yields at most MaxChunk raw bytes.
	chunks := e.RawLen / MaxChunk
	if e.RawLen%MaxChunk != 0 {
		chunks++
	}
	if chunks > e.StoredLen/ChunkHeaderSize || (e.RawLen == 0) != (e.StoredLen == 0) {
		return errs.Corruptf(r.file, at, "value %q: raw length %d impossible for stored length %d", e.Name, e.RawLen, e.StoredLen)
	}
	return nil
}

// ID returns the segment ID recorded in the file.
func (r *Reader) ID() uint64 { return r.id }

// File returns the name the Reader was opened with.
func (r *Reader) File() string { return r.file }

// Size returns the size of the file.
func (r *Reader) Size() int64 { return r.size }

// Entries returns the index, sorted by name. Don't modify it.
func (r *Reader) Entries() []Entry { return r.entries }

// Find returns the entry of name.
func (r *Reader) Find(name string) (Entry, bool) {
	i := sort.Search(len(r.entries), func(i int) bool { return r.entries[i].Name >= name })
	if i < len(r.entries) && r.entries[i].Name == name {
		return r.entries[i], true
	}
	return Entry{}, false
}

// ReadStored reads the value e locates as it is stored (chunk headers
// included) and checks it against its stored checksum, without
// decompressing it: what Writer.AddStored copies.
func (r *Reader) ReadStored(e Entry) ([]byte, error) {
	if err := r.checkBounds(e, e.Offset); err != nil {
		return nil, err
	}
	stored := make([]byte, e.StoredLen) // within the file: checked above
	if err := r.readAt(stored, e.Offset); err != nil {
		return nil, err
	}
	if got := xxhash.Sum64(stored); got != e.StoredSum {
		return nil, errs.CorruptCause(errChecksum, r.file, e.Offset, "value %q (%d bytes): checksum %016x, want %016x", e.Name, e.StoredLen, got, e.StoredSum)
	}
	return stored, nil
}

// Read reads, verifies and decompresses the value e locates, and returns
// its raw bytes. e may come from Entries, Find, or a record elsewhere (a
// manifest): it is checked against the file before it is trusted.
func (r *Reader) Read(e Entry) ([]byte, error) {
	stored, err := r.ReadStored(e)
	if err != nil {
		return nil, err
	}
	chunks, err := r.chunks(e, stored)
	if err != nil {
		return nil, err
	}
	var out []byte
	if e.RawLen <= trustedRatio*e.StoredLen+MaxChunk {
		out = make([]byte, e.RawLen)
		if len(chunks) == 1 {
			err = r.decodeChunk(e, chunks[0], out[:chunks[0].rawLen])
		} else {
			err = r.decodeParallel(e, chunks, out)
		}
	} else {
		out, err = r.decodeGrowing(e, chunks)
	}
	if err != nil {
		return nil, err
	}
	if got := xxhash.Sum64(out); got != e.RawSum {
		return nil, errs.CorruptCause(errChecksum, r.file, e.Offset, "value %q: decoded checksum %016x, want %016x", e.Name, got, e.RawSum)
	}
	return out, nil
}

// trustedRatio is the raw-to-stored ratio up to which Read allocates a
// value's raw length before decompressing it. Past it (a value of zeros,
// or a crafted file whose checksums hold but whose chunks declare
// lengths their bytes do not back), Read grows its buffer as chunks
// actually decompress, so what it allocates is what the data yields.
const trustedRatio = 64

type chunk struct {
	codec    byte
	src      []byte
	raw      int64 // offset in the output
	rawLen   int
	at       int64 // file offset of the chunk header
	storeLen int
}

// chunks parses the chunk headers of a value's stored bytes.
func (r *Reader) chunks(e Entry, stored []byte) ([]chunk, error) {
	var chunks []chunk
	var rawOff int64
	for pos := 0; pos < len(stored); {
		at := e.Offset + int64(pos)
		if len(stored)-pos < ChunkHeaderSize {
			return nil, errs.Corruptf(r.file, at, "value %q: chunk header cut short", e.Name)
		}
		h := stored[pos : pos+ChunkHeaderSize]
		c := chunk{codec: h[0], rawLen: int(le.Uint32(h[4:])), storeLen: int(le.Uint32(h[8:])), at: at, raw: rawOff}
		switch {
		case c.codec != codecNone && c.codec != codecZstd:
			return nil, errs.Corruptf(r.file, at, "value %q: unknown chunk codec %d", e.Name, c.codec)
		case h[1] != 0 || h[2] != 0 || h[3] != 0:
			return nil, errs.Corruptf(r.file, at+1, "value %q: reserved chunk bytes are not zero", e.Name)
		case c.rawLen < 1 || c.rawLen > MaxChunk || c.storeLen < 1 || c.storeLen > c.rawLen ||
			(c.codec == codecNone && c.storeLen != c.rawLen):
			return nil, errs.Corruptf(r.file, at, "value %q: bad chunk lengths raw %d stored %d", e.Name, c.rawLen, c.storeLen)
		case len(stored)-pos-ChunkHeaderSize < c.storeLen:
			return nil, errs.Corruptf(r.file, at, "value %q: chunk of %d bytes runs past the value's end", e.Name, c.storeLen)
		case e.RawLen-rawOff < int64(c.rawLen):
			return nil, errs.Corruptf(r.file, at, "value %q: chunks hold more than the raw length %d", e.Name, e.RawLen)
		}
		c.src = stored[pos+ChunkHeaderSize : pos+ChunkHeaderSize+c.storeLen]
		chunks = append(chunks, c)
		rawOff += int64(c.rawLen)
		pos += ChunkHeaderSize + c.storeLen
	}
	if rawOff != e.RawLen {
		return nil, errs.Corruptf(r.file, e.Offset, "value %q: chunks hold %d bytes, want %d", e.Name, rawOff, e.RawLen)
	}
	return chunks, nil
}

func (r *Reader) decodeParallel(e Entry, chunks []chunk, out []byte) error {
	return par.Each(len(chunks), runtime.GOMAXPROCS(0), func(k int) error {
		c := chunks[k]
		return r.decodeChunk(e, c, out[c.raw:c.raw+int64(c.rawLen)])
	})
}

// decodeGrowing decodes the chunks one by one, appending each to the
// output only once it has decompressed to its declared length.
func (r *Reader) decodeGrowing(e Entry, chunks []chunk) ([]byte, error) {
	out := make([]byte, 0, min(e.RawLen, trustedRatio*e.StoredLen+MaxChunk))
	var buf []byte
	for _, c := range chunks {
		buf = slicesGrow(buf, c.rawLen)
		if err := r.decodeChunk(e, c, buf); err != nil {
			return nil, err
		}
		out = append(out, buf...)
	}
	return out, nil
}

// slicesGrow returns b resized to n bytes, reusing its array if it can.
func slicesGrow(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	return make([]byte, n)
}

// decodeAll is the decompression decodeChunk calls; tests replace it.
var decodeAll = (*zstd.Decoder).DecodeAll

// decodeChunk decompresses c into dst, which has exactly c.rawLen bytes.
// A decompressor that panics on the chunk's bytes (a crafted chunk whose
// checksums hold) makes it corruption of the chunk, on whatever
// goroutine it runs: every path that decompresses (Read, with one chunk
// or many, Check, Verify) comes through here.
func (r *Reader) decodeChunk(e Entry, c chunk, dst []byte) (err error) {
	if c.codec == codecNone {
		copy(dst, c.src)
		return nil
	}
	dec := zstdDecoder()
	defer func() {
		if v := recover(); v != nil {
			retireDecoder(dec)
			err = errs.Corruptf(r.file, c.at, "value %q: decompressing the chunk panicked: %v", e.Name, v)
		}
	}()
	got, err := decodeAll(dec, c.src, dst[:0:len(dst)])
	if err != nil {
		return errs.Corruptf(r.file, c.at, "value %q: chunk does not decompress: %v", e.Name, err)
	}
	if len(got) != len(dst) || (len(got) > 0 && &got[0] != &dst[0]) {
		return errs.Corruptf(r.file, c.at, "value %q: chunk decompresses to %d bytes, want %d", e.Name, len(got), len(dst))
	}
	return nil
}

// Check verifies the value e locates as Read does, decompressing it chunk
// by chunk into one reused buffer: it never holds the whole raw value.
func (r *Reader) Check(e Entry) error {
	stored, err := r.ReadStored(e)
	if err != nil {
		return err
	}
	chunks, err := r.chunks(e, stored)
	if err != nil {
		return err
	}
	var d xxhash.Digest
	d.Reset()
	var buf []byte
	for _, c := range chunks {
		buf = slicesGrow(buf, c.rawLen)
		if err := r.decodeChunk(e, c, buf); err != nil {
			return err
		}
		d.Write(buf)
	}
	if got := d.Sum64(); got != e.RawSum {
		return errs.CorruptCause(errChecksum, r.file, e.Offset, "value %q: decoded checksum %016x, want %016x", e.Name, got, e.RawSum)
	}
	return nil
}

// Verify checks every value, and so, with the checks Open made, every
// byte of the file. It returns the first problem found.
func (r *Reader) Verify() error {
	for _, e := range r.entries {
		if err := r.Check(e); err != nil {
			return err
		}
	}
	return nil
}
