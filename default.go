package instadump

import (
	"fmt"
	"log/slog"
	"reflect"
	"sync"
)

// The seed's style: states declared at package level on a default DB.

var (
	defMu     sync.Mutex
	defStates = map[string]member{}
	defOrder  []member
	defDB     *DB
	defShut   string // the directory of the default DB Shutdown closed last
)

// errNoSetup is returned by the default-DB functions before Setup.
var errNoSetup = fmt.Errorf("%w: the default DB is not set up (call instadump.Setup first)", ErrClosed)

// DefState declares a state of the default DB. It may run before Setup,
// in a package-level var declaration; until Setup the state holds def
// (a Set before Setup holds in memory only). Setup sets every declared
// state to its saved value, or to def. It panics if name
// is declared twice, breaks the name rule of NewState, or T cannot be
// stored, as flag does: all are bugs in the declaring program, found at
// start.
//
// Declared after Setup, it loads its saved value at once; if that fails
// (a stored value of another type, say), it logs an error naming the
// state (to WithLogger's logger, else to slog's default one) and the
// state holds def and is not saved.
func DefState[T any](name string, def T, opts ...StateOption[T]) *State[T] {
	if err := checkName(name, MaxNameLen); err != nil {
		panic(err.Error())
	}
	if err := checkType(reflect.TypeFor[T]()); err != nil {
		panic(fmt.Sprintf("%v (DefState %s)", err, quote(name)))
	}
	s, err := newState(name, def, opts)
	if err != nil {
		panic(err.Error())
	}
	declare(s)
	return s
}

// declare adds m to the default DB's declarations, and registers it if
// the DB is set up.
func declare(m member) {
	defMu.Lock()
	defer defMu.Unlock()
	name := m.memberName()
	if defStates[name] != nil {
		panic(fmt.Sprintf("instadump: %s declared twice", quote(name)))
	}
	defStates[name] = m
	defOrder = append(defOrder, m)
	if defDB != nil {
		if err := defDB.register(m); err != nil {
			logger := defDB.log
			if defDB.opts.logger == nil {
				logger = slog.Default()
			}
			logger.Error("instadump: a state declared after Setup could not load its saved value: it holds its default and is NOT saved", "state", name, "dir", defDB.Dir(), "err", err)
		}
	}
}

// Setup opens dir as the default DB and sets every declared state to its
// saved value there, or to its default if dir holds none: what was set
// before Setup, or in a DB set up before, does not carry over. It is all or nothing: on error
// it names each state that failed, says what to do, changes no state and
// leaves no DB open.
func Setup(dir string, opts ...Option) error {
	defMu.Lock()
	defer defMu.Unlock()
	if defDB != nil {
		return fmt.Errorf("instadump: Setup(%q): the default DB is already open at %s; call Shutdown first", dir, defDB.Dir())
	}
	db, err := Open(dir, opts...)
	if err != nil {
		return err
	}
	if err := db.registerAll(defOrder, true); err != nil {
		db.Close()
		return fmt.Errorf("instadump: Setup(%q) opened nothing and changed no state, as these could not load:\n%w", dir, err)
	}
	defDB = db
	return nil
}

// Default returns the default DB, or nil before Setup.
func Default() *DB {
	defMu.Lock()
	defer defMu.Unlock()
	return defDB
}

// SaveAll saves the default DB (see DB.Save).
func SaveAll() (Snapshot, error) {
	db, err := defaultDB("SaveAll")
	if err != nil {
		return Snapshot{}, err
	}
	return db.Save()
}

// ReloadAll reloads the default DB (see DB.Reload).
func ReloadAll() error {
	db, err := defaultDB("ReloadAll")
	if err != nil {
		return err
	}
	return db.Reload()
}

// defaultDB returns the default DB, or an error wrapping ErrClosed that
// says whether it was never set up or is shut down.
func defaultDB(op string) (*DB, error) {
	defMu.Lock()
	defer defMu.Unlock()
	if defDB == nil {
		return nil, notOpen(op)
	}
	return defDB, nil
}

// notOpen says why the default DB is not open. Call with defMu held.
func notOpen(op string) error {
	if defShut != "" {
		return fmt.Errorf("%w: %s: the default DB (%s) is shut down already; Setup opens it again", ErrClosed, op, defShut)
	}
	return errNoSetup
}

// Shutdown closes the default DB (see DB.Close). Setup may be called again
// afterwards; declared states then hold what the new DB holds, or their
// defaults. Shutdown when the default DB is not open (never set up, or
// shut down already) returns an error wrapping ErrClosed that says which.
func Shutdown() error {
	defMu.Lock()
	defer defMu.Unlock()
	if defDB == nil {
		return notOpen("Shutdown")
	}
	defShut = defDB.Dir()
	err := defDB.Close()
	defDB = nil
	return err
}
