package codec

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// Marshallers whose output is not one msgpack value.
type (
	// twoItems's MarshalMsgpack returns two values.
	twoItems struct{ N int }
	// cutItem's MarshalMsgpack returns an array of two holding one.
	cutItem struct{ N int }
	// noItem's MarshalMsgpack returns nothing.
	noItem struct{ N int }
	// encOnly is a CustomEncoder writing two values, decoded as a
	// struct (it has no decoder of its own).
	encOnly struct{ A, B int }
	// cutStream is a CustomEncoder/CustomDecoder pair whose encoder
	// writes an array header with one of its two elements.
	cutStream struct{ A int }
	// emptyStream is a CustomEncoder/CustomDecoder pair writing and
	// reading nothing.
	emptyStream struct{}
)

func (x twoItems) MarshalMsgpack() ([]byte, error) { return []byte{0x01, 0x02}, nil }
func (x *twoItems) UnmarshalMsgpack(b []byte) error {
	return msgpack.Unmarshal(b, &x.N)
}
func (x cutItem) MarshalMsgpack() ([]byte, error) { return []byte{0x92, 0x01}, nil }
func (x *cutItem) UnmarshalMsgpack(b []byte) error {
	return msgpack.Unmarshal(b, &x.N)
}
func (x noItem) MarshalMsgpack() ([]byte, error)  { return nil, nil }
func (x *noItem) UnmarshalMsgpack(b []byte) error { return nil }
func (x encOnly) EncodeMsgpack(e *msgpack.Encoder) error {
	return e.EncodeMulti(x.A, x.B)
}
func (x cutStream) EncodeMsgpack(e *msgpack.Encoder) error {
	if err := e.EncodeArrayLen(2); err != nil {
		return err
	}
	return e.EncodeInt(int64(x.A))
}
func (x *cutStream) DecodeMsgpack(d *msgpack.Decoder) error {
	if _, err := d.DecodeArrayLen(); err != nil {
		return err
	}
	return d.Decode(&x.A)
}
func (x emptyStream) EncodeMsgpack(*msgpack.Encoder) error  { return nil }
func (x *emptyStream) DecodeMsgpack(*msgpack.Decoder) error { return nil }

// badMarshal requires encoding v to fail with ErrUnsupported naming
// typ, on Append and Encode.
func badMarshal[T any](t *testing.T, v T, typ, what string) {
	t.Helper()
	c, err := For[T]()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(nil, &v); !errors.Is(err, ErrUnsupported) || !errors.Is(err, ErrNeverLoads) || !strings.Contains(err.Error(), typ) || !strings.Contains(err.Error(), what) {
		t.Fatalf("Append(%T): %v", v, err)
	}
	if err := c.Encode(&bytes.Buffer{}, &v); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Encode(%T): %v", v, err)
	}
}

// A marshaller must write one whole msgpack value (a CustomEncoder
// whose type decodes itself with a CustomDecoder, one or more: it reads
// them back from the stream): anything else would save and never load.
func TestMarshallerOutputIsOneValue(t *testing.T) {
	badMarshal(t, twoItems{}, "codec.twoItems", "2 msgpack values")
	badMarshal(t, cutItem{}, "codec.cutItem", "not whole msgpack")
	badMarshal(t, noItem{}, "codec.noItem", "nothing")
	badMarshal(t, encOnly{}, "codec.encOnly", "2 msgpack values")
	badMarshal(t, cutStream{}, "codec.cutStream", "not whole msgpack")
	badMarshal(t, emptyStream{}, "codec.emptyStream", "nothing")
	badMarshal(t, struct{ X []twoItems }{[]twoItems{{1}}}, "codec.twoItems", "2 msgpack values")
	badMarshal(t, map[string]any{"k": cutItem{}}, "codec.cutItem", "not whole msgpack")
	badMarshal(t, make([]twoItems, parMinElems+10), "codec.twoItems", "2 msgpack values") // on several goroutines
	// msgpack/v5's own example pair (EncodeMulti, DecodeMulti) loads.
	same(t, custom{1, 2})
	same(t, []custom{{1, 2}, {3, 4}})
}
