package codec

import (
	"reflect"
	"unsafe"
)

// The omitempty rule is msgpack/v5's isEmptyValue: through interfaces to
// the dynamic value (nil is empty); a value with an IsZero() bool method
// is empty when nil or IsZero; else by kind: zero length (arrays, maps,
// slices, strings: an array is empty only if its type has length 0), no
// field left after omission (structs), false, 0 (-0 too), nil
// (pointers); other kinds never.

type isZeroer interface{ IsZero() bool }

var isZeroerType = reflect.TypeFor[isZeroer]()

// zeroerEmpty is the rule for a type with an IsZero method.
func zeroerEmpty(t reflect.Type) func(unsafe.Pointer) bool {
	nilable := t.Kind() == reflect.Pointer || t.Kind() == reflect.Map || t.Kind() == reflect.Slice ||
		t.Kind() == reflect.Interface || t.Kind() == reflect.Chan || t.Kind() == reflect.Func
	return func(p unsafe.Pointer) bool {
		v := reflect.NewAt(t, p).Elem()
		if nilable && v.IsNil() {
			return true
		}
		return v.Interface().(isZeroer).IsZero()
	}
}

// reflectEmpty is the rule for types compiled without one of their own.
func reflectEmpty(t reflect.Type) func(unsafe.Pointer) bool {
	return func(p unsafe.Pointer) bool { return reflectEmptyValue(reflect.NewAt(t, p).Elem()) }
}

// reflectEmptyValue applies the rule to v; it runs while encoding, never
// while compiling (its struct case may compile).
func reflectEmptyValue(v reflect.Value) bool {
	for v.Kind() == reflect.Interface {
		if v.IsNil() {
			return true
		}
		v = v.Elem()
	}
	if v.Type().Implements(isZeroerType) {
		switch v.Kind() {
		case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Chan, reflect.Func:
			if v.IsNil() {
				return true
			}
		}
		return v.Interface().(isZeroer).IsZero()
	}
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Struct:
		if !v.CanAddr() {
			tmp := reflect.New(v.Type()).Elem()
			tmp.Set(v)
			v = tmp
		}
		return codecOf(v.Type()).empty(v.Addr().UnsafePointer())
	case reflect.Bool:
		return !v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return v.Float() == 0
	case reflect.Pointer:
		return v.IsNil()
	}
	return false
}
