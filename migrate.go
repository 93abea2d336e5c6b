package instadump

import (
	"errors"
	"fmt"
	"math"
	"reflect"
)

// Schemas and migrations: a value is stored with the schema version of
// its state's type (0 unless the state has migrations). When a program
// changes a state's type, it gives the state a migration from the old
// schema: a stored value of that schema is decoded as the old type and
// converted, once, and the next Save writes it in the new form, with the
// new schema version.

// StateOption configures a State registered by NewState or DefState.
type StateOption[T any] interface {
	applyState(c *stateConfig[T])
}

type stateConfig[T any] struct {
	schema     uint64 // the current schema version: one past the newest migration's
	migrations map[uint64]func(raw []byte) (*T, error)
	err        error
}

type migration[T any] struct {
	from   uint64
	decode func(raw []byte) (*T, error)
	err    error
}

func (m migration[T]) applyState(c *stateConfig[T]) {
	if c.migrations == nil {
		c.migrations = map[uint64]func([]byte) (*T, error){}
	}
	if _, dup := c.migrations[m.from]; dup && c.err == nil {
		c.err = fmt.Errorf("instadump: two migrations from schema %d", m.from)
	}
	if m.err != nil && c.err == nil {
		c.err = m.err
	}
	c.migrations[m.from] = m.decode
	c.schema = max(c.schema, m.from+1)
}

// MigrateFrom converts a value stored in schema version schema, of type
// Old, into the state's type T. The state's own schema version becomes
// one past its newest migration's: values it saves are stored with that
// version, and load without a migration. A stored value that needs one
// is converted when the state is registered, and the next Save writes it
// in the new form; if fn fails, registration fails and nothing changes
// on disk.
//
// Values stored before a state had any migration have schema version 0:
// MigrateFrom(0, ...) is the first migration of a state. schema may not
// be math.MaxUint64: registration fails, as the version after it does
// not fit.
func MigrateFrom[Old, T any](schema uint64, fn func(Old) (T, error)) StateOption[T] {
	m := migration[T]{from: schema}
	if schema == math.MaxUint64 {
		// The state's schema would be schema+1, which wraps to 0.
		m.err = fmt.Errorf("instadump: MigrateFrom(%d): the state's schema would be one past it, which does not fit in a uint64; number schemas from 0 up, one a migration", schema)
	} else if err := checkType(reflect.TypeFor[Old]()); err != nil {
		m.err = fmt.Errorf("%w (the type its migration from schema %d takes)", err, schema)
	}
	m.decode = func(raw []byte) (*T, error) {
		var old Old
		if err := decodeValue(raw, &old); err != nil {
			return nil, decodeError("", raw, fmt.Sprintf("%s (the type its migration from schema %d takes)", reflect.TypeFor[Old](), schema), err)
		}
		v, err := fn(old)
		if err != nil {
			return nil, fmt.Errorf("its migration from schema %d failed (nothing was changed): %w", schema, err)
		}
		return &v, nil
	}
	return m
}

func (c *stateConfig[T]) check(name string) error {
	if c.err != nil {
		return fmt.Errorf("%w (state %s)", c.err, quote(name))
	}
	return nil
}

// decode decodes a value of state name stored in schema version schema.
func (c *stateConfig[T]) decode(name string, raw []byte, schema uint64) (*T, error) {
	if schema == c.schema {
		v := new(T)
		if err := decodeValue(raw, v); err != nil {
			return nil, decodeError(name, raw, reflect.TypeFor[T]().String(), err)
		}
		return v, nil
	}
	wanted := fmt.Sprintf("%s of schema version %d", reflect.TypeFor[T](), c.schema)
	if schema > c.schema {
		return nil, &DecodeError{State: name, Stored: fmt.Sprintf("value of schema version %d", schema), Wanted: wanted,
			Err: errors.New("a newer program saved it"), todo: "run the newer program, or Drop it"}
	}
	migrate := c.migrations[schema]
	if migrate == nil {
		return nil, &DecodeError{State: name, Stored: fmt.Sprintf("value of schema version %d", schema), Wanted: wanted,
			Err: fmt.Errorf("no migration from schema version %d", schema), todo: fmt.Sprintf("give it one (MigrateFrom(%d, ...)), or Drop it", schema)}
	}
	v, err := migrate(raw)
	if de, ok := err.(*DecodeError); ok {
		de.State = name
		return nil, de
	}
	if err != nil {
		return nil, &migrationError{state: name, err: err}
	}
	return v, nil
}

// migrationError is a migration of a state that failed; its text names
// the state, so the caller adds no "(loading state ...)".
type migrationError struct {
	state string
	err   error
}

func (e *migrationError) Error() string {
	return fmt.Sprintf("instadump: state %s: %v", quote(e.state), e.err)
}

func (e *migrationError) Unwrap() error { return e.err }
