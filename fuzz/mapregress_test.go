package fuzz

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/instadump/instadump"
	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/segment"
)

// A Map that gets a delta at every save, beside a State rewritten at
// every save: each segment is mostly the State's old, dead value, and
// the Map's chain runs through all of them. A compaction must move the
// chain into its fresh segment even when the same save adds a delta to
// it; it used to leave the chain where it was, so that the segments grew
// with every save (to 35 times the live bytes by the 60th) until the
// Map's base was next rewritten, however often compaction ran (I6).
func TestRegressMapDeltaInCompactionMovesChain(t *testing.T) {
	mem := vfs.NewMem()
	db, err := instadump.Open(dbDir, instadump.WithFS(mem), instadump.WithRetain(1), instadump.WithCompression(instadump.LevelNone))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m, err := instadump.NewMap[string, string](db, "m")
	if err != nil {
		t.Fatal(err)
	}
	big, err := instadump.NewState(db, "big", []byte(nil))
	if err != nil {
		t.Fatal(err)
	}
	for j := 0; j < 1000; j++ { // a base that 40 one-key deltas do not make too long
		m.Set(key(j), val(key(j), 0, 30))
	}
	rng := rand.New(rand.NewSource(1))
	for i := 1; i <= 40; i++ {
		b := make([]byte, 64<<10)
		rng.Read(b)
		big.Set(b)
		m.Set(key(i), fmt.Sprint(i))
		if _, err := db.Save(); err != nil {
			t.Fatal(err)
		}
		e, err := engine.Open(dbDir, engine.Options{FS: mem, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		var live, all int64
		for _, n := range e.LiveBytes() {
			live += n
		}
		r, _ := e.Lookup(0, "m")
		e.Close()
		names, err := mem.List(dbDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if _, ok := segment.ParseFileName(n); ok {
				all += int64(len(readAll(t, mem, n)))
			}
		}
		// Compaction comes once more than half the bytes are dead: after
		// any save the segments hold at most about twice the live bytes
		// and the segment that save wrote.
		if all > 3*live {
			t.Fatalf("save %d: the segments hold %d bytes, %.1f times the %d live bytes (the Map's chain: %d deltas)", i, all, float64(all)/float64(live), live, len(r.Deltas))
		}
	}
}
