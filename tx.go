package instadump

import (
	"fmt"
	"runtime/debug"
)

// Tx is a transaction of Atomically: the changes made through SetIn
// become visible all at once when the function returns nil, or not at
// all. A Tx is only valid inside its function.
type Tx struct {
	db     *DB
	writes map[stateBase]any
	done   bool
}

// Atomically runs fn with every other writer of db held back, so that fn
// sees and makes a consistent change across several states. The SetIn
// calls of fn take effect together when it returns nil; if it returns an
// error or panics, none of them does, and Atomically returns the error
// (a panic becomes an error with its stack). A snapshot never holds part
// of a transaction.
//
// Transactions run one at a time, so they never deadlock, in whatever
// order they touch states. Inside fn, use GetIn and SetIn (Get is fine
// too); calling Set, Update or Atomically of the same DB would wait for
// fn forever.
func (db *DB) Atomically(fn func(*Tx) error) (err error) {
	if db.closed.Load() {
		return ErrClosed
	}
	db.mu.Lock()
	tx := &Tx{db: db, writes: map[stateBase]any{}}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("instadump: Atomically: the function panicked, every SetIn was rolled back: %v\n%s", r, debug.Stack())
		}
		if err == nil {
			for s, v := range tx.writes {
				s.install(v, false)
			}
		}
		tx.done = true
		db.mu.Unlock()
	}()
	return fn(tx)
}

func (s *State[T]) checkTx(tx *Tx, op string) {
	// Misuse that can only be a bug in the calling code; there is no
	// error to return from GetIn or SetIn.
	if tx == nil || tx.done {
		panic(fmt.Sprintf("instadump: %s on state %q with a transaction that is not running (use the *Tx only inside its Atomically function)", op, s.name))
	}
	if s.db.Load() != tx.db {
		panic(fmt.Sprintf("instadump: %s on state %q with a transaction of another DB", op, s.name))
	}
}

// GetIn returns the state's value as transaction tx sees it: the value
// it set, or the current one.
func (s *State[T]) GetIn(tx *Tx) T {
	s.checkTx(tx, "GetIn")
	if v, ok := tx.writes[s]; ok {
		return *v.(*T)
	}
	s.barrier() // fn may change what it gets in place
	return *s.cur.Load()
}

// SetIn sets the state's value in transaction tx; it takes effect when
// the transaction's function returns nil.
func (s *State[T]) SetIn(tx *Tx, v T) {
	s.checkTx(tx, "SetIn")
	s.barrier()
	tx.writes[s] = &v
}
