package instadump

import (
	"errors"
	"fmt"
	"sync"
)

// The seed's style: states declared at package level on a default DB.

var (
	defMu     sync.Mutex
	defStates = map[string]stateBase{}
	defOrder  []stateBase
	defDB     *DB
)

// errNoSetup is returned by the default-DB functions before Setup.
var errNoSetup = fmt.Errorf("%w: the default DB is not set up (call instadump.Setup first)", ErrClosed)

// DefState declares a state of the default DB. It may run before Setup,
// in a package-level var declaration; until Setup the state holds def.
// Setup loads the saved value of every declared state. It panics if name
// is declared twice or is not 1 to 1024 bytes, as flag does: both are
// bugs in the declaring program, found at start.
func DefState[T any](name string, def T) *State[T] {
	if err := checkName(name); err != nil {
		panic(err.Error())
	}
	defMu.Lock()
	defer defMu.Unlock()
	if defStates[name] != nil {
		panic(fmt.Sprintf("instadump: DefState %q declared twice", name))
	}
	s := newState(name, def)
	defStates[name] = s
	defOrder = append(defOrder, s)
	if defDB != nil {
		// Declared after Setup: load it now. A failure leaves it holding def.
		if err := defDB.register(s); err != nil {
			defDB.log.Error("instadump: DefState after Setup could not load its saved value", "state", name, "err", err)
		}
	}
	return s
}

// Setup opens dir as the default DB and loads every DefState. On error it
// names each state that failed and leaves no DB open.
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
	var errs []error
	for _, s := range defOrder {
		if err := db.register(s); err != nil {
			errs = append(errs, fmt.Errorf("state %q: %w", s.stateName(), err))
		}
	}
	if len(errs) > 0 {
		db.Close()
		return fmt.Errorf("instadump: Setup(%q) could not load %d state(s): %w", dir, len(errs), errors.Join(errs...))
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
	db := Default()
	if db == nil {
		return Snapshot{}, errNoSetup
	}
	return db.Save()
}

// ReloadAll reloads the default DB (see DB.Reload).
func ReloadAll() error {
	db := Default()
	if db == nil {
		return errNoSetup
	}
	return db.Reload()
}

// Shutdown closes the default DB (see DB.Close). Setup may be called again
// afterwards; DefStates then load from the new DB.
func Shutdown() error {
	defMu.Lock()
	defer defMu.Unlock()
	if defDB == nil {
		return errNoSetup
	}
	err := defDB.Close()
	defDB = nil
	return err
}
