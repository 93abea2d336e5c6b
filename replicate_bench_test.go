package instadump

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/instadump/instadump/internal/versitygw"
	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/replica/s3"
)

// Replication measured against the local work of the same data, in the
// same run:
//
//	go test -run '^$' -bench Replica -benchtime 3x .
//	source .ci/versitygw && go test -run '^$' -bench Replica -benchtime 3x .   # and to S3
//
// Workload A is one State holding a map of 1M records; D is a Map of 1M
// records. INSTADUMP_BENCH_MB, when set, caps their size at about that
// many megabytes of msgpack (CI runs them at 4).

// replEntries is the size of workloads A and D.
func replEntries() int {
	n := 1_000_000
	if os.Getenv("INSTADUMP_BENCH_MB") != "" {
		n = min(n, benchMB()<<20/75)
	}
	return n
}

var (
	replRecsOnce sync.Once
	replRecs     map[string]benchRecord
)

func replRecords() map[string]benchRecord {
	replRecsOnce.Do(func() {
		recs := makeRecords(replEntries(), 7)
		replRecs = make(map[string]benchRecord, len(recs))
		for i, r := range recs {
			replRecs[fmt.Sprintf("k%09d", i)] = r
		}
	})
	return replRecs
}

// replWorkload is what a benchmark saves: fill registers its states on db
// and sets all of them (the next Save writes everything); load registers
// them on a DB just opened, reading them back.
type replWorkload struct {
	name string
	fill func(b *testing.B, db *DB)
	load func(b *testing.B, db *DB)
}

var replWorkloads = []replWorkload{
	{
		name: "A", // one State[map[string]Record]
		fill: func(b *testing.B, db *DB) {
			s, err := NewState(db, "big", map[string]benchRecord(nil))
			if err != nil {
				b.Fatal(err)
			}
			s.Set(replRecords())
		},
		load: func(b *testing.B, db *DB) {
			if s, err := NewState(db, "big", map[string]benchRecord(nil)); err != nil || len(s.Get()) != replEntries() {
				b.Fatalf("loaded %v", err)
			}
		},
	},
	{
		name: "D", // a Map[string, Record]
		fill: func(b *testing.B, db *DB) {
			m, err := NewMap[string, benchRecord](db, "big")
			if err != nil {
				b.Fatal(err)
			}
			for k, v := range replRecords() {
				m.Set(k, v)
			}
		},
		load: func(b *testing.B, db *DB) {
			if m, err := NewMap[string, benchRecord](db, "big"); err != nil || m.Len() != replEntries() {
				b.Fatalf("loaded %v", err)
			}
		},
	},
}

// replStores are the stores benchmarks ship to: a directory on the same
// disk, and S3 (versitygw on the loopback interface) when there is one.
var replStores = []struct {
	name string
	make func(b *testing.B) replica.Store
}{
	{"dir", func(b *testing.B) replica.Store {
		st, err := replica.NewDir(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		return st
	}},
	{"s3", func(b *testing.B) replica.Store {
		cfg := versitygw.Config(b)
		cfg.PartSize = s3.DefaultPartSize
		st, err := s3.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		return st
	}},
}

func replWaitB(b *testing.B, db *DB, id uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // a hang guard
	defer cancel()
	if err := db.WaitReplicated(ctx, id); err != nil {
		b.Fatal(err)
	}
}

// Shipping a full save against the save itself: the local Save (encode,
// compress, write, fsync), then the time until WaitReplicated confirms
// the snapshot in the store.
func BenchmarkReplicaShip(b *testing.B) {
	for _, w := range replWorkloads {
		for _, sc := range replStores {
			b.Run(w.name+"/"+sc.name, func(b *testing.B) {
				var save, ship time.Duration
				var bytes int64
				for range b.N {
					b.StopTimer()
					db, err := Open(filepath.Join(b.TempDir(), "db"), WithReplica(sc.make(b)))
					if err != nil {
						b.Fatal(err)
					}
					w.fill(b, db)
					runtime.GC()
					b.StartTimer()
					t0 := time.Now()
					snap, err := db.Save()
					if err != nil {
						b.Fatal(err)
					}
					t1 := time.Now()
					replWaitB(b, db, snap.ID)
					save, ship, bytes = save+t1.Sub(t0), ship+time.Since(t1), bytes+snap.Bytes
					b.StopTimer()
					db.Close()
				}
				b.SetBytes(bytes / int64(b.N))
				b.ReportMetric(float64(save.Milliseconds())/float64(b.N), "save-ms")
				b.ReportMetric(float64(ship.Milliseconds())/float64(b.N), "ship-ms")
				b.ReportMetric(float64(bytes)/(1<<20)/save.Seconds(), "save-MB/s")
				b.ReportMetric(float64(bytes)/(1<<20)/ship.Seconds(), "ship-MB/s")
			})
		}
	}
}

// Restore from the store (download, verify every checksum, write, sync)
// then Open and load, against Open and load of a local copy.
func BenchmarkReplicaRestore(b *testing.B) {
	for _, w := range replWorkloads {
		for _, sc := range replStores {
			b.Run(w.name+"/"+sc.name, func(b *testing.B) {
				st := sc.make(b)
				local := filepath.Join(b.TempDir(), "db")
				db, err := Open(local, WithReplica(st))
				if err != nil {
					b.Fatal(err)
				}
				w.fill(b, db)
				snap, err := db.Save()
				if err != nil {
					b.Fatal(err)
				}
				replWaitB(b, db, snap.ID)
				db.Close()
				open := func(b *testing.B, dir string) {
					db, err := Open(dir)
					if err != nil {
						b.Fatal(err)
					}
					w.load(b, db)
					db.Close()
				}
				b.Run("restore+open", func(b *testing.B) {
					b.SetBytes(snap.Bytes)
					for range b.N {
						b.StopTimer()
						dir := filepath.Join(b.TempDir(), "r")
						runtime.GC()
						b.StartTimer()
						if _, err := Restore(context.Background(), st, dir); err != nil {
							b.Fatal(err)
						}
						open(b, dir)
					}
				})
				b.Run("open-local", func(b *testing.B) {
					b.SetBytes(snap.Bytes)
					for range b.N {
						b.StopTimer()
						runtime.GC()
						b.StartTimer()
						open(b, local)
					}
				})
			})
		}
	}
}

// The lag of a writer saving every 100 ms: a Map of a tenth of the
// workloads' entries, 1000 keys changed before each save; the lag of a
// save is the time from Save's return until WaitReplicated confirms it.
func BenchmarkReplicaLag(b *testing.B) {
	const saves, every, changed = 30, 100 * time.Millisecond, 1000
	for _, sc := range replStores {
		b.Run(sc.name, func(b *testing.B) {
			var lags []time.Duration
			var mu sync.Mutex
			for range b.N {
				b.StopTimer()
				db, err := Open(filepath.Join(b.TempDir(), "db"), WithReplica(sc.make(b)))
				if err != nil {
					b.Fatal(err)
				}
				m, _ := NewMap[string, benchRecord](db, "m")
				recs := makeRecords(replEntries()/10, 3)
				for i, r := range recs {
					m.Set(fmt.Sprintf("k%08d", i), r)
				}
				snap, err := db.Save()
				if err != nil {
					b.Fatal(err)
				}
				replWaitB(b, db, snap.ID)
				b.StartTimer()
				var wg sync.WaitGroup
				tick := time.NewTicker(every)
				for s := range saves {
					<-tick.C
					for j := range changed {
						k := (s*changed + j*7919) % len(recs)
						r := recs[k]
						r.Count++
						m.Set(fmt.Sprintf("k%08d", k), r)
					}
					snap, err := db.Save()
					if err != nil {
						b.Fatal(err)
					}
					saved := time.Now()
					wg.Go(func() {
						replWaitB(b, db, snap.ID)
						mu.Lock()
						lags = append(lags, time.Since(saved))
						mu.Unlock()
					})
				}
				tick.Stop()
				wg.Wait()
				b.StopTimer()
				db.Close()
			}
			slices.Sort(lags)
			b.ReportMetric(float64(lags[len(lags)/2].Microseconds())/1000, "lag-p50-ms")
			b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds())/1000, "lag-p99-ms")
			b.ReportMetric(float64(lags[len(lags)-1].Microseconds())/1000, "lag-max-ms")
		})
	}
}
