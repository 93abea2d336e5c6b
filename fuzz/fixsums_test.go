package fuzz

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// The fuzzer cannot forge xxhash64, so inputs that fail a checksum never
// reach the code behind it. With fix set, the targets first rewrite every
// checksum the input's own structure points at, so that the parsers of
// indexes, chunks and record payloads see arbitrary bytes too.

var le = binary.LittleEndian

func fixSegmentSums(d []byte) []byte {
	d = append([]byte(nil), d...)
	if len(d) < segment.MinFileSize {
		return d
	}
	le.PutUint64(d[24:], xxhash.Sum64(d[:24]))
	t := d[len(d)-segment.TrailerSize:]
	toff := uint64(len(d) - segment.TrailerSize)
	ioff, ilen := le.Uint64(t[0:]), le.Uint64(t[8:])
	if ioff <= toff && ilen <= toff-ioff {
		index := d[ioff : ioff+ilen]
		// Value checksums first: they are inside the index.
		for pos := 4; pos+segment.EntryHeaderSize <= len(index); {
			h := index[pos:]
			off, n := le.Uint64(h[4:]), le.Uint64(h[12:])
			if off <= ioff && n <= ioff-off {
				le.PutUint64(h[28:], xxhash.Sum64(d[off:off+n]))
			}
			pos += segment.EntryHeaderSize + int(le.Uint16(h[0:]))
		}
		le.PutUint64(t[16:], xxhash.Sum64(index))
	}
	le.PutUint64(t[32:], xxhash.Sum64(t[:32]))
	return d
}

func fixManifestSums(d []byte) []byte {
	d = append([]byte(nil), d...)
	if len(d) < manifest.HeaderSize {
		return d
	}
	le.PutUint64(d[24:], xxhash.Sum64(d[:24]))
	for pos := manifest.HeaderSize; pos+manifest.FrameHeaderSize <= len(d); {
		l := int(le.Uint32(d[pos+4:]))
		if l > len(d)-pos-manifest.FrameHeaderSize {
			break
		}
		var x xxhash.Digest
		x.Reset()
		x.Write(d[pos+4 : pos+8])
		x.Write(d[pos+manifest.FrameHeaderSize : pos+manifest.FrameHeaderSize+l])
		le.PutUint64(d[pos+8:], x.Sum64())
		pos += manifest.FrameHeaderSize + l
	}
	return d
}
