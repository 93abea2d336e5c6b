package fuzz

import (
	"fmt"
	"testing"

	"github.com/instadump/instadump"
)

// fuzzMapWorkload decodes a Map workload from fuzz input: the retention
// and compression, then steps (sets of up to three keys, deletes, a key set and deleted
// again, saves, reopens, reloads of the retained snapshots, Atomically
// transfers between the accounts of a Map and a State), at most 24, and
// a last save.
func fuzzMapWorkload(data []byte) *mapWorkload {
	in := fuzzInput(data)
	next := in.next
	flags := next()
	spec := mapSpec{retain: 1 + int(flags%3), maps: []string{"m", "n"}, accts: "accts",
		ints: map[string]int{"reserve": acctTotal, "transfers": 0}}
	if flags&4 != 0 { // values stored as they are: compactions of the segments come sooner
		spec.level = instadump.LevelNone
	}
	accts := []string{"", "a0", "a1", "a2", "a3"}
	var steps []func(w *mapEnv) error
	for i := 0; len(in) > 0 && i < 24; i++ {
		op := next() % 8
		name := spec.maps[op%2]
		switch op {
		case 0, 1: // sets
			for n := 1 + int(next()%3); n > 0; n-- {
				k, size := key(int(next()%16)), int(next())*13%3000
				steps = append(steps, func(w *mapEnv) error { w.set(name, k, val(k, i, size)); return nil })
			}
		case 2, 3: // deletes
			for n := 1 + int(next()%2); n > 0; n-- {
				k := key(int(next() % 16))
				steps = append(steps, func(w *mapEnv) error { w.del(name, k); return nil })
			}
		case 4: // a key set and deleted in the same save, or deleted and set
			k, setLast := key(int(next()%16)), next()%2 == 1
			steps = append(steps, func(w *mapEnv) error {
				if setLast {
					w.del("m", k)
					w.set("m", k, val(k, i, 7))
				} else {
					w.set("m", k, val(k, i, 7))
					w.del("m", k)
				}
				return nil
			})
		case 5:
			steps = append(steps, (*mapEnv).save)
		case 6:
			if next()%2 == 0 {
				steps = append(steps, (*mapEnv).open)
			} else {
				steps = append(steps, (*mapEnv).readOld)
			}
		case 7:
			b := next()
			from, to := accts[b%5], accts[(int(b%5)+1+int(b/5%4))%5]
			amount := int(next()) * 3
			steps = append(steps, func(w *mapEnv) error { return w.transfer(from, to, amount, "n") })
		}
	}
	return &mapWorkload{name: fmt.Sprintf("fuzzed (%d steps)", len(steps)), spec: spec, run: func(w *mapEnv) error {
		if err := w.open(); err != nil {
			return err
		}
		for _, st := range steps {
			if err := st(w); err != nil {
				return err
			}
		}
		return w.save()
	}}
}

// FuzzMapCrashRecovery is FuzzCrashRecovery for Maps, through the public
// API: a Map workload, a crash point and a crash state decoded from the
// input, checked key by key.
func FuzzMapCrashRecovery(f *testing.F) {
	f.Add([]byte{0, 0, 2, 1, 200, 3, 50, 5, 2, 0, 4, 5, 4, 3, 0, 5}, uint16(7), byte(0))
	f.Add([]byte{1, 0, 2, 1, 9, 2, 100, 5, 7, 3, 90, 7, 12, 200, 5, 6, 0, 3, 1, 4, 5, 6, 1, 5}, uint16(40), byte(3))
	f.Add([]byte{2, 1, 2, 5, 255, 6, 255, 5, 0, 1, 5, 80, 5, 6, 0, 2, 1, 5, 5, 7, 44, 9, 5, 4, 7, 1, 5}, uint16(77), byte(20))
	f.Add([]byte{4, 1, 2, 0, 230, 1, 231, 2, 232, 5, 1, 2, 0, 230, 1, 231, 2, 232, 5, 0, 1, 3, 20, 5, 1, 2, 0, 230, 1, 231, 2, 232, 5, 6, 1, 5}, uint16(60), byte(9))
	f.Fuzz(func(t *testing.T, data []byte, at uint16, kind byte) {
		fuzzCrash(t, fuzzMapWorkload(data), at, kind)
	})
}
