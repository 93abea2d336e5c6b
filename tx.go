package instadump

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// Tx is a transaction of Atomically: the changes made through SetIn
// become visible all at once when the function returns nil, or not at
// all. A Tx is only valid inside its function.
type Tx struct {
	db     *DB
	writes map[member]any
	done   bool
}

// ErrReloaded: a transaction's states were reloaded (Reload, ReloadFrom)
// while it ran, so what it computed from them was not applied.
var ErrReloaded = errors.New("instadump: the states were reloaded while the transaction ran; nothing of it was applied")

// Atomically runs fn with every other writer of db (Set, Update,
// Atomically) held back, so that fn sees and makes a consistent change
// across several states. The SetIn calls of fn take effect together when
// it returns nil; if it returns an error or panics, none of them does, and
// Atomically returns the error (a panic becomes an error with its stack).
// A snapshot never holds part of a transaction.
//
// Transactions run one at a time, so they never deadlock, in whatever
// order they touch states. Inside fn, use GetIn and SetIn (Get is fine
// too). Set, Update and Atomically of the same DB would wait for fn to
// end: never call them from fn. Save, Reload, ReloadFrom, NewState,
// NewMap, Drop and Close may be called from fn; a Reload makes the
// transaction fail with ErrReloaded.
func (db *DB) Atomically(fn func(*Tx) error) (err error) {
	if db.closed.Load() {
		return ErrClosed
	}
	db.wmu.Lock()
	defer db.wmu.Unlock()
	db.cmu.Lock()
	epoch := db.epoch
	db.cmu.Unlock()
	tx := &Tx{db: db, writes: map[member]any{}}
	defer func() { tx.done = true }()
	if err := runTx(fn, tx); err != nil {
		return err
	}
	db.cmu.Lock()
	defer db.cmu.Unlock()
	if db.epoch != epoch {
		return ErrReloaded
	}
	for m, v := range tx.writes {
		if db.members[m.memberName()] == m { // not dropped meanwhile
			m.install(v, false, 0)
		}
	}
	return nil
}

func runTx(fn func(*Tx) error, tx *Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("instadump: Atomically: the function panicked, every SetIn was rolled back: %v\n%s", r, debug.Stack())
		}
	}()
	return fn(tx)
}

// checkTx panics on misuse that can only be a bug in the calling code:
// there is no error to return from GetIn or SetIn. Inside Atomically's
// function the panic becomes Atomically's error.
func checkTx(tx *Tx, op, name string, db *DB) {
	if tx == nil || tx.done {
		panic(fmt.Sprintf("instadump: %s on state %s with a transaction that is not running (use the *Tx only inside its Atomically function)", op, quote(name)))
	}
	if db != tx.db {
		panic(fmt.Sprintf("instadump: %s on state %s, which is not registered on the transaction's DB (another DB, or dropped)", op, quote(name)))
	}
}

// GetIn returns the state's value as transaction tx sees it: the value
// it set, or the current one.
func (s *State[T]) GetIn(tx *Tx) T {
	checkTx(tx, "GetIn", s.name, s.db.Load())
	if v, ok := tx.writes[s]; ok {
		return *v.(*T)
	}
	s.barrier(&tx.db.locks)
	return *s.cur.Load()
}

// SetIn sets the state's value in transaction tx; it takes effect when
// the transaction's function returns nil.
func (s *State[T]) SetIn(tx *Tx, v T) {
	checkTx(tx, "SetIn", s.name, s.db.Load())
	s.barrier(&tx.db.locks)
	tx.writes[s] = &v
}
