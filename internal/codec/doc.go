// Package codec is a compiled msgpack codec that writes and reads the
// bytes of github.com/vmihailenco/msgpack/v5 (v5.4.1, default Encoder
// flags, Unmarshal), several times faster.
//
// At the first use of a Go type, For builds its encoder and decoder once,
// with reflection, as closures that then work on the value's memory
// through unsafe.Pointer: no reflection per value in the hot paths (maps
// still go through reflect's map iterator and SetMapIndex). Codecs are
// cached per type. Large slices and maps (32768 elements or more) are
// encoded and decoded on every core: msgpack arrays and maps are a header
// followed by their elements, so batches encoded apart concatenate in
// order; on decoding, Skip finds the batch boundaries first.
//
// # Guarantees
//
// Exact bytes. Append and Encode write what msgpack/v5 writes for the
// same value with a default Encoder (for a map, for some iteration
// order), so data msgpack/v5 wrote loads, and msgpack/v5 reads what the
// codec writes. That includes the integer forms (int and uint in their
// smallest form; int8..int64 and uint8..uint64 at their own width),
// float32/float64, str8 for 32..255-byte strings, bin for []byte and
// [N]byte, time.Time as ext -1 in the 4/8/12-byte forms, nil for nil
// slices, maps, pointers and interfaces, and struct tags as msgpack/v5
// reads them: renames, "-", omitempty with its emptiness rules (IsZero
// methods, structs with nothing left, -0, arrays only if of length 0),
// alias, inline/noinline and automatic inlining of embedded structs
// (shadowing, nil embedded pointers), as_array and _msgpack, repeated
// names.
//
// Same values. Decode gives the Go values msgpack/v5's Unmarshal gives
// for bytes msgpack/v5 wrote: interface{} holds what DecodeInterface
// returns (int8 for small integers, map[string]interface{},
// []interface{}, time.Time in time.Local, ...), nil and empty stay
// apart, str and bin are interchangeable, nil is the zero of numbers.
//
// Strict numbers. Where msgpack/v5 silently cuts (300 into an int8 gives
// 44 there, -5 into a uint32 gives 4294967291), the codec returns an
// ErrMismatch error, at every width, in every position (struct fields,
// elements, map keys and values). Conversions are accepted only when
// exact: a smaller integer into a larger kind, an integral float into an
// integer, an integer into a float that holds it exactly, a float64 into
// a float32 that holds it (NaN and the infinities carry over).
//
// Bounds. Decode never panics (panics of msgpack/v5 and of methods it
// calls, on any goroutine of the codec, come back as errors), never
// trusts a length beyond the bytes that back it (each element takes one
// byte at least, a map entry two; large elements are allocated as they
// arrive), and refuses nesting deeper than MaxDepth. Encoding stops at
// MaxDepth too, so a cyclic value is an ErrTooDeep error, not a stack
// overflow.
//
// Fallback. A type msgpack/v5 encodes or decodes with methods of its own
// (msgpack.CustomEncoder/CustomDecoder, msgpack.Marshaler/Unmarshaler,
// encoding.BinaryMarshaler/BinaryUnmarshaler,
// encoding.TextMarshaler/TextUnmarshaler, on the type or its pointer,
// checked in msgpack/v5's order; RegisterExt types implement Marshaler)
// is handed to msgpack/v5 for that part of the value only: the rest
// stays compiled. Types registered with msgpack.Register,
// RegisterExtEncoder or RegisterExtDecoder leave no trace in their method
// set; they are found by a probe at compile time: msgpack/v5 encodes the
// zero value of every named type and struct, and the type is handed over
// if those bytes differ from the codec's, or decode differently. On
// decoding, msgpack/v5 reads from the input stream itself, since a
// CustomDecoder may read several values. On encoding, what a method
// wrote must be one whole msgpack value (one or more for a type decoded
// by a CustomDecoder): two values from a MarshalMsgpack, a cut value or
// nothing would never decode, and is an ErrUnsupported error.
//
// Known differences, all where msgpack/v5 fails, panics or cuts: the
// strict numbers above, and exact conversions it refuses (float64 into
// float32, floats into integers); an interface{} holding a non-pointer
// value is replaced when decoded into (msgpack/v5 fails or panics); a
// time.Time decodes from nil as the zero time; a map value with pointer
// methods is encoded (msgpack/v5 refuses a non-addressable value); a top-
// level time.Time decodes like a field (msgpack/v5's Unmarshal also reads
// the legacy array and string forms there); bytes after the value are an
// error; a map key decoded into an interface that cannot be hashed is an
// error (msgpack/v5 panics), and so encoding such a key is (a key holding
// an interface whose dynamic value is an array, a struct or a pointer to
// one, written as an array, map or bin: msgpack/v5 writes it, and then
// cannot read it). The intern tag option and the encoder flags
// (SortMapKeys, UseCompactInts, ...) are not supported.
//
// # Security
//
// The input of Decode and Skip may be anything: corrupt, truncated or
// hostile bytes cost time and memory in proportion to their length, and
// end in an *Error. The Go types are trusted: they come from the program.
// So are the methods of types handed to msgpack/v5 and msgpack/v5 itself
// (its own allocation limits apply to those parts; their panics are
// recovered, not their infinite loops or memory use). A value being
// encoded is trusted not to change meanwhile (a map that changes size is
// an error; other changes are races).
//
// # Testing
//
// msgpack/v5 is the oracle. FuzzDifferential builds random Go types
// (structs with random tags, maps, slices, arrays, pointers over every
// number width, strings, []byte, time.Time, interface{}) and values, and
// requires the codec's bytes to be msgpack/v5's, and both decoders fed
// both encodings to agree, or to differ only where the strict number rule
// refuses what msgpack/v5 cuts, or where the codec refuses a map key that
// would not load, both of which the fuzzer checks independently.
// FuzzDecode feeds arbitrary bytes to several types and bounds the memory
// allocated. Table tests cover every kind and tag, the number matrix at
// every width boundary, time forms, nil and empty, recursive and cyclic
// values, depth limits, huge headers, truncation at every prefix, and
// fallback types mixed into compiled ones, panicking on worker
// goroutines. bench_test.go measures A (a map of 1M records) and B (1000
// slices of 1333 records) against msgpack/v5 in the same run.
package codec
