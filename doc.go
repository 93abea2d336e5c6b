// Package instadump keeps a program's state in ordinary in-memory
// variables and dumps them to disk, safely, whenever the program chooses.
// At the next start the variables come back on their own. There is no
// database server and no schema: name a state, give it a default, and
// instadump does the rest.
//
//	db, err := instadump.Open("db")
//	counter, err := instadump.NewState(db, "counter", 150)
//	counter.Set(counter.Get() + 1)
//	users, err := instadump.NewMap[int, User](db, "users") // saves only the keys changed
//	users.Set(42, User{Name: "Ada"})
//	snap, err := db.Save() // durable when it returns nil
//
// Or in the style of the Clojure library it descends from, with states
// declared at package level on a default DB:
//
//	var testvar1 = instadump.DefState("testvar1", 150)
//
//	func main() {
//		if err := instadump.Setup("db"); err != nil { ... }
//		defer instadump.Shutdown()
//		testvar1.Set(1000)
//		instadump.SaveAll()
//	}
//
// Values are stored as msgpack (as github.com/vmihailenco/msgpack/v5
// writes it): structs by field name, so fields can be added or removed
// between runs; a renamed field keeps its data with the tag
// msgpack:"New,alias:Old"; a changed type gets a migration (MigrateFrom).
// A value must not be changed in place after Set: build a new one. A
// State suits values that change whole; a Map, a big map changed a key at
// a time (its saves and loads cost what changed). Drop retires a state.
//
// # Guarantees
//
// A snapshot is a consistent cut: every Set, Update and Atomically is
// wholly in it or wholly out of it. Save returns nil only once the
// snapshot is durable; a crash at any later moment recovers it or a newer
// one, never a mix of two. A failing Save (full disk, I/O error, a value
// that cannot be encoded) leaves the last snapshot loadable. Damage on
// disk is found by checksums and reported as ErrCorrupt naming file and
// offset; wrong data is never handed to the program: a stored value that
// does not fit its Go type (an integer too big for it, say) is
// ErrTypeMismatch, not a value cut to fit.
//
// # On disk
//
// A directory holds segments (package segment: one per save, the values
// it changed, zstd-compressed and checksummed), a manifest (package
// manifest: a log of commit records saying where every state's value
// lives) and CURRENT, naming the live manifest. Package engine holds the
// commit protocol and recovery; this package captures and encodes values
// and hands them to it. The instadump-inspect command looks inside a
// directory.
//
// What this package writes into a segment, value by value (the manifest
// names where each lies: see package manifest):
//
//	State value   one msgpack item, the bytes msgpack/v5 writes for the
//	              value (internal/codec writes the same bytes faster).
//	Map base part a msgpack map: a header (0x80|n for n < 16; 0xde and
//	              n as a big-endian uint16; 0xdf and n as a big-endian
//	              uint32), then n pairs of items, key then value, keys as
//	              msgpack/v5 writes K (bool, integer or string). The parts
//	              of one base hold disjoint keys; which part holds a key
//	              is not part of the format (it follows a hash seeded per
//	              process): a reader takes their union.
//	Map delta     a msgpack array of two (0x92): first a map as above of
//	              the keys set since the snapshot before, with their new
//	              values; then a msgpack array (0x90|n for n < 16; 0xdc
//	              and a big-endian uint16; 0xdd and a big-endian uint32)
//	              of the keys deleted since. A key is in at most one of
//	              the two.
//
// A Map loads as the union of its base parts, then each delta applied in
// the order the manifest lists them (oldest first: sets replace or add,
// deletions remove); the entry count it ends with must equal the one the
// manifest records, else the load fails as ErrCorrupt. Bytes after an
// item, a header whose count the data cannot hold, or an item that is
// not what the type needs are errors, never a partial load.
package instadump
