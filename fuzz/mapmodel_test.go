package fuzz

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/instadump/instadump"
	"github.com/instadump/instadump/engine"
	"github.com/instadump/instadump/internal/vfs"
	"github.com/instadump/instadump/manifest"
	"github.com/instadump/instadump/segment"
)

// Map workloads run through the public API (instadump.Open with WithFS,
// NewMap, NewState, Atomically, Save, ReloadFrom, Close) against a model
// of what each acknowledged save holds: every Map key by key, every
// State. The model also follows what the DB's memory holds (live), and
// the workloads check memory against it before each save.

// content is what a DB holds: every Map key by key (an accounts Map's
// balances in decimal) and every State.
type content struct {
	Maps map[string]map[string]string
	Ints map[string]int
}

func (c content) clone() content {
	out := content{Maps: make(map[string]map[string]string, len(c.Maps)), Ints: maps.Clone(c.Ints)}
	for name, m := range c.Maps {
		out.Maps[name] = maps.Clone(m)
	}
	return out
}

// diffContent lists how got differs from want, key by key ("" if it
// does not), naming at most a few differences.
func diffContent(got, want content) string {
	var d []string
	for _, name := range slices.Sorted(maps.Keys(want.Maps)) {
		g, ok := got.Maps[name]
		if !ok {
			d = append(d, fmt.Sprintf("map %s missing", name))
			continue
		}
		w := want.Maps[name]
		for _, k := range slices.Sorted(maps.Keys(w)) {
			gv, ok := g[k]
			switch {
			case !ok:
				d = append(d, fmt.Sprintf("%s[%s] missing, want %s", name, k, short(w[k])))
			case gv != w[k]:
				d = append(d, fmt.Sprintf("%s[%s] = %s, want %s", name, k, short(gv), short(w[k])))
			}
		}
		for _, k := range slices.Sorted(maps.Keys(g)) {
			if _, ok := w[k]; !ok {
				d = append(d, fmt.Sprintf("%s[%s] = %s, want no such key", name, k, short(g[k])))
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(got.Maps)) {
		if _, ok := want.Maps[name]; !ok {
			d = append(d, fmt.Sprintf("map %s not expected", name))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want.Ints)) {
		if g, ok := got.Ints[name]; !ok || g != want.Ints[name] {
			d = append(d, fmt.Sprintf("state %s = %d, want %d", name, g, want.Ints[name]))
		}
	}
	if len(d) > 6 {
		d = append(d[:6], fmt.Sprintf("and %d more", len(d)-6))
	}
	return strings.Join(d, "; ")
}

func short(v string) string {
	if len(v) > 16 {
		return fmt.Sprintf("%q…(%d bytes)", v[:16], len(v))
	}
	return strconv.Quote(v)
}

// acctTotal is what an accounts Map and its reserve State hold together.
const acctTotal = 1000

// mapSpec names what a workload registers, at every open and in this
// order, before it changes anything: so every snapshot holds every name,
// and every retained one can be reached with ReloadFrom.
type mapSpec struct {
	retain int
	level  instadump.Level // of compression
	maps   []string        // Map[string]string; the first takes the checks' own keys
	// accts, if set, is a Map[string]int of balances that, with the
	// State "reserve", always holds acctTotal (transfers are Atomically).
	accts string
	ints  map[string]int // State[int], with their defaults
}

func (s *mapSpec) initial() content {
	c := content{Maps: map[string]map[string]string{}, Ints: maps.Clone(s.ints)}
	if c.Ints == nil {
		c.Ints = map[string]int{}
	}
	for _, n := range s.maps {
		c.Maps[n] = map[string]string{}
	}
	if s.accts != "" {
		c.Maps[s.accts] = map[string]string{}
	}
	return c
}

// checkSum checks the transfer invariant across the accounts' keys (I3).
func (s *mapSpec) checkSum(c content) error {
	if s.accts == "" {
		return nil
	}
	sum := c.Ints["reserve"]
	for k, v := range c.Maps[s.accts] {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%s[%s] = %q", s.accts, k, v)
		}
		sum += n
	}
	if sum != acctTotal {
		return fmt.Errorf("I3: the accounts and the reserve hold %d, not %d: half a transfer", sum, acctTotal)
	}
	return nil
}

// mapModel is what each acknowledged save holds, and the one in flight.
type mapModel struct {
	acked      content
	ackedID    uint64
	inflight   *content
	inflightID uint64
	history    map[uint64]content
}

func newMapModel(spec *mapSpec) *mapModel {
	return &mapModel{acked: spec.initial(), history: map[uint64]content{}}
}

func (m *mapModel) ack() {
	m.acked, m.ackedID = *m.inflight, m.inflightID
	m.history[m.ackedID] = m.acked
	m.inflight = nil
}

// mapEnv runs a Map workload on an FS, keeping the model.
type mapEnv struct {
	fs   vfs.FS
	spec *mapSpec
	m    *mapModel
	live content // what the DB's memory holds

	db    *instadump.DB
	maps  map[string]*instadump.Map[string, string]
	accts *instadump.Map[string, int]
	ints  map[string]*instadump.State[int]

	// chains, when set, gets what every acknowledged save made of each
	// Map on disk, read from raw (the MemFS under fs) by a read-only
	// engine: how the tests see that a save rewrote a base, or that a
	// compaction moved one.
	raw    *vfs.MemFS
	chains map[string][]chainLink
}

// chainLink is how a snapshot holds a Map: its base and chain of deltas.
type chainLink struct {
	snap              uint64
	since             uint64 // the snapshot that last wrote it
	deltas            int
	baseRaw, deltaRaw int64  // encoded bytes
	baseSeg           uint64 // the segment of its base's first part
}

// rewroteBase says whether link (after prev) is a base written anew by
// its save because the chain before it had grown past an eighth of the
// base (the chain compaction), not a delta.
func rewroteBase(prev, link chainLink) bool {
	return prev.deltas > 0 && 8*prev.deltaRaw > prev.baseRaw && link.deltas == 0 && link.since == link.snap // the rule of mapsave.go
}

// moved says whether link's base (after prev) is in another segment
// though its save did not write a new one: a save that compacted the
// segments (rewriting every live value into a fresh one) moved it. wrote
// says whether that save also added a delta to the chain.
func moved(prev, link chainLink) (ok, wrote bool) {
	rewrote := link.deltas == 0 && link.since == link.snap
	return link.baseSeg != prev.baseSeg && !rewrote, link.since == link.snap
}

func newMapEnv(fs vfs.FS, spec *mapSpec) *mapEnv {
	return &mapEnv{fs: fs, spec: spec, m: newMapModel(spec), live: spec.initial()}
}

func (w *mapEnv) openDB() error {
	w.close()
	db, err := instadump.Open(dbDir, instadump.WithFS(w.fs), instadump.WithRetain(w.spec.retain), instadump.WithCompression(w.spec.level))
	if err != nil {
		return err
	}
	w.db = db
	w.maps, w.accts, w.ints = map[string]*instadump.Map[string, string]{}, nil, map[string]*instadump.State[int]{}
	return w.register()
}

// open opens (or reopens: a reopen rolls the manifest over) the DB,
// registers the spec's states, and learns whether recovery found the
// save in flight.
func (w *mapEnv) open() error {
	if err := w.openDB(); err != nil {
		return err
	}
	return w.learn()
}

// learn follows an open in the model: the snapshot it recovered is the
// acknowledged one or the one in flight, and memory holds it.
func (w *mapEnv) learn() error {
	id := currentID(w.db)
	switch {
	case w.m.inflight != nil && id == w.m.inflightID:
		w.m.ack()
	case id != w.m.ackedID:
		return fmt.Errorf("open recovered snapshot %d; acknowledged %d, in flight %d (%v)", id, w.m.ackedID, w.m.inflightID, w.m.inflight != nil)
	}
	w.m.inflight = nil
	w.live = w.m.acked.clone()
	return w.checkLive("after open")
}

// register registers what the spec names and is not registered yet
// (again after a registration failed), in a fixed order.
func (w *mapEnv) register() error {
	for _, n := range w.spec.maps {
		if w.maps[n] != nil {
			continue
		}
		m, err := instadump.NewMap[string, string](w.db, n)
		if err != nil {
			return err
		}
		w.maps[n] = m
	}
	if w.spec.accts != "" && w.accts == nil {
		m, err := instadump.NewMap[string, int](w.db, w.spec.accts)
		if err != nil {
			return err
		}
		w.accts = m
	}
	for _, n := range slices.Sorted(maps.Keys(w.spec.ints)) {
		if w.ints[n] != nil {
			continue
		}
		s, err := instadump.NewState(w.db, n, w.spec.ints[n])
		if err != nil {
			return err
		}
		w.ints[n] = s
	}
	return nil
}

func (w *mapEnv) close() {
	if w.db != nil {
		w.db.Close()
		w.db = nil
	}
}

func currentID(db *instadump.DB) uint64 {
	snaps, err := db.Snapshots()
	if err != nil || len(snaps) == 0 {
		return 0
	}
	return snaps[len(snaps)-1].ID
}

// read returns what the registered states hold now, checking each Map's
// Len against its entries.
func (w *mapEnv) read() (content, error) {
	c := content{Maps: map[string]map[string]string{}, Ints: map[string]int{}}
	for name, m := range w.maps {
		got := map[string]string{}
		for k, v := range m.All() {
			got[k] = v
		}
		if m.Len() != len(got) {
			return c, fmt.Errorf("map %s: Len %d, All gives %d entries", name, m.Len(), len(got))
		}
		c.Maps[name] = got
	}
	if w.accts != nil {
		got := map[string]string{}
		for k, v := range w.accts.All() {
			got[k] = strconv.Itoa(v)
		}
		if w.accts.Len() != len(got) {
			return c, fmt.Errorf("map %s: Len %d, All gives %d entries", w.spec.accts, w.accts.Len(), len(got))
		}
		c.Maps[w.spec.accts] = got
	}
	for name, s := range w.ints {
		c.Ints[name] = s.Get()
	}
	return c, nil
}

// checkLive checks that memory holds what the model says it does.
func (w *mapEnv) checkLive(when string) error {
	got, err := w.read()
	if err != nil {
		return err
	}
	if d := diffContent(got, w.live); d != "" {
		return fmt.Errorf("%s, memory differs from the model: %s", when, d)
	}
	return w.spec.checkSum(got)
}

func (w *mapEnv) set(m, k, v string) {
	w.maps[m].Set(k, v)
	w.live.Maps[m][k] = v
}

func (w *mapEnv) del(m, k string) {
	w.maps[m].Delete(k)
	delete(w.live.Maps[m], k)
}

func (w *mapEnv) setInt(n string, v int) {
	w.ints[n].Set(v)
	w.live.Ints[n] = v
}

// save saves and updates the model: the snapshot in flight is what
// memory holds; acknowledged once Save returns nil.
func (w *mapEnv) save() error {
	if err := w.checkLive("before a save"); err != nil {
		return err
	}
	next := w.live.clone()
	w.m.inflight, w.m.inflightID = &next, w.m.ackedID+1
	snap, err := w.db.Save()
	if err != nil {
		return err
	}
	switch snap.ID {
	case w.m.inflightID:
		w.m.ack()
	case w.m.ackedID: // nothing changed: nothing written
		if d := diffContent(w.live, w.m.acked); d != "" {
			return fmt.Errorf("a save of changes (%s) wrote nothing", d)
		}
		w.m.inflight = nil
	default:
		return fmt.Errorf("save made snapshot %d, model expects %d", snap.ID, w.m.inflightID)
	}
	if w.chains != nil {
		return w.observe(snap.ID)
	}
	return nil
}

// observe notes how the current snapshot holds each Map.
func (w *mapEnv) observe(id uint64) error {
	e, err := engine.Open(dbDir, engine.Options{FS: w.raw, ReadOnly: true})
	if err != nil {
		return err
	}
	defer e.Close()
	for _, name := range append(slices.Clone(w.spec.maps), w.spec.accts) {
		r, ok := e.Lookup(0, name)
		if !ok || r.Kind != engine.MapState {
			continue
		}
		l := chainLink{snap: id, since: r.Since, deltas: len(r.Deltas)}
		for _, b := range r.Base {
			l.baseRaw += b.RawLen
		}
		for _, d := range r.Deltas {
			l.deltaRaw += d.RawLen
		}
		if len(r.Base) > 0 {
			l.baseSeg = r.Base[0].Segment
		}
		w.chains[name] = append(w.chains[name], l)
	}
	return nil
}

// reloadFrom reloads retained snapshot id: memory holds what the model
// says it held.
func (w *mapEnv) reloadFrom(id uint64) error {
	want, ok := w.m.history[id]
	if !ok {
		return fmt.Errorf("snapshot %d was never acknowledged", id)
	}
	if err := w.db.ReloadFrom(id); err != nil {
		return err
	}
	w.live = want.clone()
	return w.checkLive(fmt.Sprintf("after ReloadFrom(%d)", id))
}

// readOld reloads every retained snapshot, checking each key by key,
// and goes back to the current one (dropping unsaved changes).
func (w *mapEnv) readOld() error {
	snaps, err := w.db.Snapshots()
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if err := w.reloadFrom(s.ID); err != nil {
			return err
		}
	}
	return nil
}

// transfer moves amount (at most what from holds) from account from to
// account to in one Atomically, "" being the reserve State, deleting an
// account it empties; it counts the transfer in State "transfers" and
// notes it in Map log. The model decides the outcome; the transaction
// checks that it reads what the model says.
func (w *mapEnv) transfer(from, to string, amount int, log string) error {
	a := w.spec.accts
	next := w.live.clone()
	bal := func(acct string) int {
		if acct == "" {
			return next.Ints["reserve"]
		}
		n, _ := strconv.Atoi(next.Maps[a][acct])
		return n
	}
	put := func(acct string, n int) {
		switch {
		case acct == "":
			next.Ints["reserve"] = n
		case n == 0:
			delete(next.Maps[a], acct)
		default:
			next.Maps[a][acct] = strconv.Itoa(n)
		}
	}
	if from == to {
		return fmt.Errorf("a transfer from %q to itself", from)
	}
	f0, t0 := bal(from), bal(to)
	amount = min(amount, f0)
	put(from, f0-amount)
	put(to, t0+amount)
	next.Ints["transfers"]++
	note := fmt.Sprintf("%s->%s:%d", from, to, amount)
	next.Maps[log][fmt.Sprint("t", next.Ints["transfers"])] = note
	err := w.db.Atomically(func(tx *instadump.Tx) error {
		get := func(acct string) int {
			if acct == "" {
				return w.ints["reserve"].GetIn(tx)
			}
			n, _ := w.accts.GetIn(tx, acct)
			return n
		}
		set := func(acct string, n int) {
			switch {
			case acct == "":
				w.ints["reserve"].SetIn(tx, n)
			case n == 0:
				w.accts.DeleteIn(tx, acct)
			default:
				w.accts.SetIn(tx, acct, n)
			}
		}
		f, t := get(from), get(to)
		if f != f0 || t != t0 {
			return fmt.Errorf("a transfer reads %q = %d and %q = %d; the model has %d and %d", from, f, to, t, f0, t0)
		}
		set(from, f-amount)
		set(to, t+amount)
		w.ints["transfers"].SetIn(tx, w.ints["transfers"].GetIn(tx)+1)
		w.maps[log].SetIn(tx, fmt.Sprint("t", next.Ints["transfers"]), note)
		return nil
	})
	if err != nil {
		return err
	}
	w.live = next
	return nil
}

// checkMapRecovery opens the crashed filesystem as the next run of the
// program would and checks I1/I2 key by key: exactly the last
// acknowledged snapshot or the one in flight; every retained snapshot,
// reached by ReloadFrom, as acknowledged; the transfer invariant in
// each (I3); no temp file or orphan left; a further save works and
// reopens. It leaves m as it is.
func checkMapRecovery(fsys *vfs.MemFS, spec *mapSpec, m *mapModel) error {
	w := &mapEnv{fs: fsys, spec: spec}
	if err := w.openDB(); err != nil {
		return fmt.Errorf("recovery failed: %w", err)
	}
	defer w.close()
	snaps, err := w.db.Snapshots()
	if err != nil {
		return err
	}
	got, err := w.read()
	if err != nil {
		return err
	}
	var cur uint64
	if len(snaps) > 0 {
		cur = snaps[len(snaps)-1].ID
	}
	switch {
	case cur == m.ackedID && diffContent(got, m.acked) == "":
	case m.inflight != nil && cur == m.inflightID && diffContent(got, *m.inflight) == "":
	case cur == m.ackedID:
		return fmt.Errorf("recovered snapshot %d (the acknowledged one) differs from the model: %s", cur, diffContent(got, m.acked))
	case m.inflight != nil && cur == m.inflightID:
		return fmt.Errorf("recovered snapshot %d (the one in flight) differs from the model: %s", cur, diffContent(got, *m.inflight))
	default:
		return fmt.Errorf("recovered snapshot %d; acknowledged %d, in flight %d (%v)", cur, m.ackedID, m.inflightID, m.inflight != nil)
	}
	if err := spec.checkSum(got); err != nil {
		return fmt.Errorf("recovered snapshot %d: %w", cur, err)
	}
	if r := w.db.Recovery(); r.FellBack || r.Damage != nil {
		return fmt.Errorf("recovery fell back: %v", r.Damage)
	}
	for _, s := range snaps[:max(len(snaps)-1, 0)] {
		want, ok := m.history[s.ID]
		if !ok {
			return fmt.Errorf("retained snapshot %d (current %d) was never acknowledged", s.ID, cur)
		}
		if err := w.db.ReloadFrom(s.ID); err != nil {
			return fmt.Errorf("retained snapshot %d (current %d): %w", s.ID, cur, err)
		}
		old, err := w.read()
		if err != nil {
			return err
		}
		if d := diffContent(old, want); d != "" {
			return fmt.Errorf("retained snapshot %d (current %d) differs from what was acknowledged: %s", s.ID, cur, d)
		}
		if err := spec.checkSum(old); err != nil {
			return fmt.Errorf("retained snapshot %d: %w", s.ID, err)
		}
	}
	if len(snaps) > 1 {
		if err := w.db.ReloadFrom(cur); err != nil {
			return fmt.Errorf("back to snapshot %d: %w", cur, err)
		}
		back, err := w.read()
		if err != nil {
			return err
		}
		if d := diffContent(back, got); d != "" {
			return fmt.Errorf("snapshot %d reloaded differs from what Open loaded: %s", cur, d)
		}
	}
	// Life goes on.
	want := got.clone()
	w.maps[spec.maps[0]].Set("after-crash", "x")
	want.Maps[spec.maps[0]]["after-crash"] = "x"
	snap, err := w.db.Save()
	if err != nil {
		return fmt.Errorf("save after recovery: %w", err)
	}
	if snap.ID != cur+1 {
		return fmt.Errorf("the save after recovery made snapshot %d, want %d", snap.ID, cur+1)
	}
	w.close()
	if err := checkFiles(fsys); err != nil {
		return err
	}
	if err := w.openDB(); err != nil {
		return fmt.Errorf("second recovery: %w", err)
	}
	again, err := w.read()
	if err != nil {
		return err
	}
	if id := currentID(w.db); id != snap.ID {
		return fmt.Errorf("after a save and reopen: snapshot %d, want %d", id, snap.ID)
	}
	if d := diffContent(again, want); d != "" {
		return fmt.Errorf("after a save and reopen: %s", d)
	}
	return nil
}

// checkFiles checks a closed DB directory: no temp file, no segment no
// retained snapshot uses, one manifest.
func checkFiles(fsys *vfs.MemFS) error {
	e, err := engine.Open(dbDir, engine.Options{FS: fsys, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("read-only open: %w", err)
	}
	used := e.LiveBytes()
	e.Close()
	return checkLeftovers(fsys, used)
}

// checkLeftovers says what recovery left in the DB directory that it
// should not: a temp file, a segment no snapshot uses (used gives the
// live bytes of each segment), more than one manifest.
func checkLeftovers(fsys vfs.FS, used map[uint64]int64) error {
	names, err := fsys.List(dbDir)
	if err != nil {
		return err
	}
	manifests := 0
	for _, n := range names {
		id, isSeg := segment.ParseFileName(n)
		_, isMan := manifest.ParseFileName(n)
		switch {
		case strings.HasSuffix(n, ".tmp"):
			return fmt.Errorf("temp file %s left after recovery", n)
		case isSeg && used[id] == 0:
			return fmt.Errorf("orphan segment %s left after recovery", n)
		case isMan:
			manifests++
		}
	}
	if manifests != 1 {
		return fmt.Errorf("%d manifests after recovery: %v", manifests, names)
	}
	return nil
}

// isCrash says whether err is the crasher's.
func isCrash(err error) bool { return errors.Is(err, errCrashed) }
