package inspect

import (
	"errors"
	"slices"
	"time"

	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/internal/errs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// Segment describes a segment file.
type Segment struct {
	ID        uint64   `json:"id"`
	File      string   `json:"file"`
	Size      int64    `json:"size"`
	Live      int64    `json:"live_bytes"` // values retained snapshots use, with their index entries
	DeadShare float64  `json:"dead_share"` // of the bytes past the fixed header and trailer
	Snapshots []uint64 `json:"snapshots"`  // retained snapshots using it
	Orphan    bool     `json:"orphan"`     // no retained snapshot uses it
}

// Segments lists every segment file in the directory.
func (d *DB) Segments() ([]Segment, error) {
	files, err := d.eng.SegmentFiles()
	if err != nil {
		return nil, err
	}
	live := d.eng.LiveBytes()
	users := map[uint64][]uint64{}
	for _, s := range d.eng.Snapshots() {
		states, _ := d.eng.States(s.ID)
		for _, id := range engine.SegmentsOf(states) {
			users[id] = append(users[id], s.ID)
		}
	}
	out := []Segment{}
	for _, f := range files {
		s := Segment{ID: f.ID, File: f.Name, Size: f.Size, Live: live[f.ID], Snapshots: users[f.ID], Orphan: len(users[f.ID]) == 0}
		slices.Sort(s.Snapshots)
		if body := f.Size - segment.MinFileSize; body > 0 {
			s.DeadShare = float64(body-s.Live) / float64(body)
		}
		out = append(out, s)
	}
	return out, nil
}

// Record is one manifest record.
type Record struct {
	Offset   int64     `json:"offset"`
	Kind     string    `json:"kind"`
	Snapshot uint64    `json:"snapshot"`
	Time     time.Time `json:"time"`
	States   int       `json:"states"`  // written or moved in this record
	Removed  int       `json:"removed"` // states dropped
	Bytes    int64     `json:"bytes_written"`
}

// Manifest is the live manifest.
type Manifest struct {
	Path     string
	Records  []Record
	TornTail error // the torn tail a crash left, ignored; nil if none
	// DamagedTail is a last record written whole and damaged since (it
	// fails its checksum): not loaded, and damage; nil if none.
	DamagedTail error
}

// Manifest returns the live manifest as Open read it.
func (d *DB) Manifest() Manifest {
	log, path := d.eng.Manifest()
	m := Manifest{Path: path, Records: []Record{}}
	if log.Tail == manifest.TailDamaged {
		m.DamagedTail = log.TailErr
	} else {
		m.TornTail = log.TailErr
	}
	for i, r := range log.Records {
		m.Records = append(m.Records, Record{Offset: log.Offsets[i], Kind: r.Kind.String(), Snapshot: r.Snapshot, Time: r.Time,
			States: len(r.States), Removed: len(r.Removed), Bytes: r.Written})
	}
	return m
}

// Verify checks every checksum of every file the DB uses: CURRENT and the
// manifest (as it opens the directory), every retained snapshot against
// its segments, and every byte of every segment they use. It returns
// every problem found, each naming its file and offset (none if the DB is
// intact). progress, if not nil, is called as segment bytes are checked.
// A DB that does not open is reported as a problem: the error of Open.
func Verify(dir string, progress func(done, total int64)) []error {
	eng, err := engine.Open(dir, engine.Options{ReadOnly: true})
	var ce *errs.CorruptError
	if errors.As(err, &ce) && ce.Hint == errs.HintDamagedTail {
		// A damaged last record fails a strict open; the rest of the
		// directory is still checked, from the snapshots before it.
		// Verify reports the record first (Report.DamagedTail).
		if feng, ferr := engine.Open(dir, engine.Options{ReadOnly: true, Fallback: true}); ferr == nil {
			eng, err = feng, nil
		}
	}
	if err != nil {
		return []error{err}
	}
	defer eng.Close()
	return eng.Verify(progress)
}
