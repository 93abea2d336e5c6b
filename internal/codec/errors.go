package codec

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Sentinel errors. Every error the codec returns is an *Error whose Kind
// is one of these, so callers test with errors.Is.
var (
	// ErrMismatch: the input is valid msgpack but does not fit the Go
	// type, including every lossy numeric conversion (300 into an int8,
	// -5 into a uint32, 1.5 into an int).
	ErrMismatch = errors.New("type mismatch")
	// ErrMalformed: the input is not msgpack: truncated, an unknown
	// code, a length the input cannot hold, or bytes after the value.
	ErrMalformed = errors.New("malformed msgpack")
	// ErrTooDeep: values nested deeper than MaxDepth, on input or on a
	// value being encoded (a cyclic value ends here).
	ErrTooDeep = errors.New("nested too deep")
	// ErrUnsupported: a type the codec cannot save or load (chan, func,
	// complex, unsafe.Pointer, uintptr, a non-empty interface, ...).
	ErrUnsupported = errors.New("unsupported type")
	// ErrNeverLoads is also matched by the ErrUnsupported errors of a
	// value that would encode but never decode again: a map key that
	// would not load as a map key, a marshaller's output that is not one
	// msgpack value. Other ErrUnsupported errors (a map changed while it
	// was encoded, say) do not match it.
	ErrNeverLoads = errors.New("the value would save but never load")
)

// MaxDepth is the deepest nesting of containers (structs, slices, arrays,
// maps, pointers, interfaces) that Append, Encode and Decode accept.
const MaxDepth = 10000

// Error describes one failure to encode or decode a value.
type Error struct {
	// Kind is ErrMismatch, ErrMalformed, ErrTooDeep or ErrUnsupported.
	Kind error
	// Path locates the value inside the top-level one, e.g.
	// `.Users["bob"].Age` or `[3].Tags[0]`; empty for the value itself.
	Path string
	// Offset is the input position of the value that failed (decoding
	// only; -1 when encoding).
	Offset int
	// Stored names what the input held, e.g. "msgpack integer 300".
	Stored string
	// Wanted names the Go type being decoded or encoded.
	Wanted string
	// Msg says what went wrong, when Stored and Wanted do not.
	Msg string
	// Err is the underlying error of a fallback (msgpack/v5 or a
	// method of the value), if any.
	Err error

	// cause is matched by errors.Is without showing in the message
	// (ErrNeverLoads).
	cause error

	// segs holds path segments innermost first while the error travels
	// up; Path is built from them once, at the top.
	segs []string
	cut  bool // segments were dropped
}

// Error formats the failure: the kind, where, and what.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("codec: ")
	b.WriteString(e.Kind.Error())
	if p := e.path(); p != "" {
		b.WriteString(" at ")
		b.WriteString(p)
	}
	if e.Offset >= 0 {
		fmt.Fprintf(&b, " (offset %d)", e.Offset)
	}
	if e.Stored != "" || e.Wanted != "" {
		b.WriteString(": ")
		if e.Stored != "" {
			b.WriteString(e.Stored)
		}
		if e.Wanted != "" {
			if e.Stored != "" {
				b.WriteString(" into ")
			} else {
				b.WriteString("encoding ")
			}
			b.WriteString(e.Wanted)
		}
	}
	if e.Msg != "" {
		b.WriteString(": ")
		b.WriteString(e.Msg)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the kind and the underlying error, for errors.Is/As.
func (e *Error) Unwrap() []error {
	errs := []error{e.Kind}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	return errs
}

func (e *Error) path() string {
	if e.Path != "" || len(e.segs) == 0 {
		return e.Path
	}
	var b strings.Builder
	for i := len(e.segs) - 1; i >= 0 && b.Len() <= maxPath; i-- {
		b.WriteString(e.segs[i])
	}
	p := b.String()
	if len(p) <= maxPath && !e.cut {
		return p
	}
	cut := min(len(p), maxPath)
	for cut > 0 && cut < len(p) && !utf8.RuneStart(p[cut]) {
		cut--
	}
	return p[:cut] + "…"
}

// finish builds Path from the collected segments.
func (e *Error) finish() *Error {
	e.Path = e.path()
	e.segs = nil
	return e
}

// maxSegs bounds the segments kept for one error while it travels up: an
// error 10,000 levels deep keeps the outermost ones, which say where in
// the top-level value it is, and marks the cut. maxPath bounds the
// path's text: a path longer is cut there and ends in "…".
const (
	maxSegs = 64
	maxPath = 64
)

// at prepends a path segment to err, which must be an *Error.
func at(err error, seg string) error {
	if e, ok := err.(*Error); ok {
		if len(e.segs) == maxSegs { // drop the innermost
			copy(e.segs, e.segs[1:])
			e.segs = e.segs[:maxSegs-1]
			e.cut = true
		}
		e.segs = append(e.segs, seg)
	}
	return err
}

func errMismatch(off int, stored, wanted string) *Error {
	return &Error{Kind: ErrMismatch, Offset: off, Stored: stored, Wanted: wanted}
}

func errMalformed(off int, msg string) *Error {
	return &Error{Kind: ErrMalformed, Offset: off, Msg: msg}
}

func errTruncated(off int) *Error {
	return &Error{Kind: ErrMalformed, Offset: off, Msg: "unexpected end of input"}
}
