package codec

import (
	"encoding/binary"
	"time"
	"unsafe"
)

// time.Time is msgpack/v5's ext type -1, in the timestamp forms of the
// msgpack spec: 4 bytes (seconds < 2^32, no nanoseconds), 8 bytes (30
// bits of nanoseconds, 34 of seconds) or 12 bytes (32-bit nanoseconds,
// 64-bit seconds, used for any time before 1970 or after 2514). Decoding
// gives what msgpack/v5 gives: time.Unix(sec, nsec), in time.Local, and
// the zero time in UTC (so it equals time.Time{}).

func appendTime(b []byte, t time.Time) []byte {
	secs := uint64(t.Unix())
	if secs>>34 == 0 {
		data := uint64(t.Nanosecond())<<34 | secs
		if data&0xffffffff00000000 == 0 {
			return binary.BigEndian.AppendUint32(append(b, 0xd6, 0xff), uint32(data))
		}
		return binary.BigEndian.AppendUint64(append(b, 0xd7, 0xff), data)
	}
	b = append(b, 0xc7, 12, 0xff)
	b = binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
	return binary.BigEndian.AppendUint64(b, secs)
}

func encTime(e *encoder, p unsafe.Pointer) error {
	e.buf = appendTime(e.buf, *(*time.Time)(p))
	return nil
}

func emptyTime(p unsafe.Pointer) bool { return (*time.Time)(p).IsZero() }

// readTime decodes an ext -1 of 4, 8 or 12 bytes (any ext header form).
// ok is false, with d.pos unchanged, if the value is not one.
func (d *decoder) readTime() (t time.Time, ok bool, err error) {
	start := d.pos
	if d.pos >= len(d.data) {
		return t, false, errTruncated(d.pos)
	}
	c := d.data[d.pos]
	var n, hdr int
	switch c {
	case 0xd6:
		n, hdr = 4, 1
	case 0xd7:
		n, hdr = 8, 1
	case 0xd4, 0xd5, 0xd8:
		n, hdr = 1<<(c-0xd4), 1
	case 0xc7, 0xc8, 0xc9:
		hdr = 1 + 1<<(c-0xc7)
		if err := d.need(hdr); err != nil {
			return t, false, err
		}
		n = int(beUint(d.data[d.pos+1:], hdr-1))
	default:
		return t, false, nil
	}
	if err := d.need(hdr + 1 + n); err != nil {
		return t, false, err
	}
	if int8(d.data[d.pos+hdr]) != -1 || (n != 4 && n != 8 && n != 12) {
		return t, false, nil
	}
	b := d.data[d.pos+hdr+1 : d.pos+hdr+1+n]
	switch n {
	case 4:
		t = time.Unix(int64(binary.BigEndian.Uint32(b)), 0)
	case 8:
		v := binary.BigEndian.Uint64(b)
		t = time.Unix(int64(v&0x3ffffffff), int64(v>>34))
	default:
		t = time.Unix(int64(binary.BigEndian.Uint64(b[4:])), int64(binary.BigEndian.Uint32(b)))
	}
	if t.IsZero() {
		t = t.UTC()
	}
	d.pos = start + hdr + 1 + n
	return t, true, nil
}

func decTime(d *decoder, p unsafe.Pointer) error {
	if d.pos < len(d.data) && d.data[d.pos] == 0xc0 {
		d.pos++
		*(*time.Time)(p) = time.Time{}
		return nil
	}
	start := d.pos
	t, ok, err := d.readTime()
	if err != nil {
		return err
	}
	if !ok {
		return d.mismatch(start, "time.Time")
	}
	*(*time.Time)(p) = t
	return nil
}
