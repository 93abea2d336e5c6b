package segment

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// Level is a compression level. The zero value, LevelFastest, is the
// default: on the machines instadump targets, zstd's fastest level
// compresses at about 4x the speed of its default for 3% less ratio.
type Level int

// Compression levels.
const (
	LevelFastest Level = iota
	LevelDefault
	LevelBetter
	LevelBest
	LevelNone // store values uncompressed
)

func (l Level) String() string {
	switch l {
	case LevelFastest:
		return "fastest"
	case LevelDefault:
		return "default"
	case LevelBetter:
		return "better"
	case LevelBest:
		return "best"
	case LevelNone:
		return "none"
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

func (l Level) zstd() zstd.EncoderLevel {
	switch l {
	case LevelDefault:
		return zstd.SpeedDefault
	case LevelBetter:
		return zstd.SpeedBetterCompression
	case LevelBest:
		return zstd.SpeedBestCompression
	}
	return zstd.SpeedFastest
}

var (
	encMu    sync.Mutex
	encoders = map[Level]*zstd.Encoder{}

	decMu   sync.Mutex
	decoder atomic.Pointer[zstd.Decoder]
)

// encoder returns the shared encoder of a level. EncodeAll on it is safe
// from many goroutines; it keeps GOMAXPROCS encoders.
func encoder(l Level) *zstd.Encoder {
	encMu.Lock()
	defer encMu.Unlock()
	e := encoders[l]
	if e == nil {
		var err error
		e, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(l.zstd()),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithEncoderCRC(false), // values carry their own xxhash64
			zstd.WithZeroFrames(true))
		if err != nil {
			panic("segment: zstd encoder options rejected: " + err.Error()) // fixed options: a bug, not input
		}
		encoders[l] = e
	}
	return e
}

// zstdDecoder returns the shared decoder. Its memory is capped at
// MaxChunk: no chunk may decode to more.
func zstdDecoder() *zstd.Decoder {
	if d := decoder.Load(); d != nil {
		return d
	}
	decMu.Lock()
	defer decMu.Unlock()
	if d := decoder.Load(); d != nil {
		return d
	}
	d := newDecoder()
	decoder.Store(d)
	return d
}

// retireDecoder stops handing out d, a decoder that panicked: its block
// decoders went back to its own pool whatever state the panic left them
// in, so the next zstdDecoder makes a fresh one. Decodes under way on d
// finish on it; nothing else holds it after them (DecodeAll starts no
// goroutine), so it is not closed but left to the garbage collector.
func retireDecoder(d *zstd.Decoder) {
	decoder.CompareAndSwap(d, nil)
}

func newDecoder() *zstd.Decoder {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithDecoderMaxMemory(MaxChunk),
		zstd.WithDecoderMaxWindow(MaxChunk))
	if err != nil {
		panic("segment: zstd decoder options rejected: " + err.Error())
	}
	return d
}
