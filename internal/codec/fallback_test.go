package codec

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// Types msgpack/v5 handles with their own methods or registrations.
type (
	// marshalPtr has pointer-receiver MarshalMsgpack/UnmarshalMsgpack.
	marshalPtr struct{ N int }
	// marshalVal has value receivers, and an odd encoding.
	marshalVal struct{ S string }
	// custom is a CustomEncoder/CustomDecoder.
	custom struct{ A, B int }
	// textual is a TextMarshaler (msgpack/v5 writes it as bin).
	textual struct{ X int }
	// binMarsh is a BinaryMarshaler.
	binMarsh struct{ X int }
	// extType is registered with RegisterExt.
	extType struct{ V uint16 }
	// registered is registered with RegisterExtEncoder/Decoder only:
	// no method shows it, the probe finds it.
	registered struct{ V int }
	// customChan handles itself though it holds a chan.
	customChan struct{ C chan int }
	// panicky panics when encoded or decoded with a value of 13.
	panicky struct{ N int }
)

func (m *marshalPtr) MarshalMsgpack() ([]byte, error) { return msgpack.Marshal(m.N * 2) }
func (m *marshalPtr) UnmarshalMsgpack(b []byte) error {
	var n int
	err := msgpack.Unmarshal(b, &n)
	m.N = n / 2
	return err
}
func (m marshalVal) MarshalMsgpack() ([]byte, error) { return msgpack.Marshal("<" + m.S + ">") }
func (m *marshalVal) UnmarshalMsgpack(b []byte) error {
	var s string
	err := msgpack.Unmarshal(b, &s)
	m.S = strings.Trim(s, "<>")
	return err
}
func (c custom) EncodeMsgpack(e *msgpack.Encoder) error { return e.EncodeMulti(c.A, c.B) }
func (c *custom) DecodeMsgpack(d *msgpack.Decoder) error {
	return d.DecodeMulti(&c.A, &c.B)
}
func (x textual) MarshalText() ([]byte, error) { return []byte(strconv.Itoa(x.X)), nil }
func (x *textual) UnmarshalText(b []byte) (err error) {
	x.X, err = strconv.Atoi(string(b))
	return err
}
func (x binMarsh) MarshalBinary() ([]byte, error) { return []byte{byte(x.X)}, nil }
func (x *binMarsh) UnmarshalBinary(b []byte) error {
	if len(b) != 1 {
		return errors.New("bad binary")
	}
	x.X = int(b[0])
	return nil
}
func (x *extType) MarshalMsgpack() ([]byte, error) { return []byte{byte(x.V >> 8), byte(x.V)}, nil }
func (x *extType) UnmarshalMsgpack(b []byte) error {
	if len(b) != 2 {
		return errors.New("bad ext")
	}
	x.V = uint16(b[0])<<8 | uint16(b[1])
	return nil
}
func (c customChan) EncodeMsgpack(e *msgpack.Encoder) error { return e.EncodeNil() }
func (c *customChan) DecodeMsgpack(d *msgpack.Decoder) error {
	return d.Skip()
}
func (p panicky) MarshalMsgpack() ([]byte, error) {
	if p.N == 13 {
		panic("unlucky")
	}
	return msgpack.Marshal(p.N)
}
func (p *panicky) UnmarshalMsgpack(b []byte) error {
	if err := msgpack.Unmarshal(b, &p.N); err != nil {
		return err
	}
	if p.N == 13 {
		panic(fmt.Errorf("unlucky %d", p.N))
	}
	return nil
}

func init() {
	msgpack.RegisterExt(7, (*extType)(nil))
	msgpack.RegisterExtEncoder(8, registered{}, func(e *msgpack.Encoder, v reflect.Value) ([]byte, error) {
		return []byte{byte(v.Interface().(registered).V)}, nil
	})
	msgpack.RegisterExtDecoder(8, registered{}, func(d *msgpack.Decoder, v reflect.Value, n int) error {
		b := make([]byte, n)
		if err := d.ReadFull(b); err != nil {
			return err
		}
		v.Set(reflect.ValueOf(registered{V: int(b[0])}))
		return nil
	})
}

type mixed struct {
	Name string
	MP   marshalPtr
	MPP  *marshalPtr
	MV   marshalVal
	C    custom
	T    textual
	B    binMarsh
	E    extType
	EP   *extType
	R    registered
	CC   customChan
	L    []custom
	M    map[string]marshalVal
	Raw  msgpack.RawMessage
	Tail int
}

func TestFallbackMixed(t *testing.T) {
	v := mixed{Name: "n", MP: marshalPtr{3}, MPP: &marshalPtr{4}, MV: marshalVal{"s"}, C: custom{1, 2},
		T: textual{42}, B: binMarsh{7}, E: extType{0x1234}, EP: &extType{5}, R: registered{9},
		L: []custom{{3, 4}}, M: map[string]marshalVal{"k": {"v"}}, Raw: msgpack.RawMessage{0x93, 1, 2, 3}, Tail: -1}
	same(t, v)
	same(t, mixed{})
	same(t, []any{&marshalPtr{1}, &extType{3}, registered{4}, textual{5}})
	c := codecOf(reflect.TypeFor[registered]())
	if !c.encFallback || !c.decFallback {
		t.Errorf("registered ext type not found by the probe: %v %v", c.encFallback, c.decFallback)
	}
	// The rest of the struct is compiled.
	if codecOf(reflect.TypeFor[mixed]()).encFallback {
		t.Error("mixed handed to msgpack/v5 whole")
	}
}

func TestFallbackErrors(t *testing.T) {
	type S struct{ B binMarsh }
	e := decodeErr[S](t, v5Marshal(t, &map[string]any{"B": []byte{1, 2}}), ErrFallback)
	if e.Path != ".B" || !strings.Contains(e.Error(), "bad binary") {
		t.Errorf("error %v", e)
	}
	c, _ := For[[]panicky]()
	for _, n := range []int{10, parMinElems + 10} {
		s := make([]panicky, n)
		s[n-5].N = 13
		if _, err := c.Append(nil, &s); !errors.Is(err, ErrFallback) || !strings.Contains(err.Error(), "unlucky") {
			t.Errorf("%d elements: %v", n, err)
		}
		if err := c.Encode(&bytes.Buffer{}, &s); !errors.Is(err, ErrFallback) {
			t.Errorf("%d elements: %v", n, err)
		}
		s[n-5].N = 12
		data, err := c.Append(nil, &s)
		if err != nil {
			t.Fatal(err)
		}
		data = bytes.Replace(data, []byte{12}, []byte{13}, 1)
		var back []panicky
		if err := c.Decode(data, &back); !errors.Is(err, ErrFallback) || !strings.Contains(err.Error(), "unlucky") {
			t.Errorf("%d elements: decode: %v", n, err)
		}
	}
	cm, _ := For[map[int]panicky]()
	m := map[int]panicky{}
	for i := range parMinElems + 10 {
		m[i] = panicky{i % 10}
	}
	m[77] = panicky{13}
	if _, err := cm.Append(nil, &m); !errors.Is(err, ErrFallback) {
		t.Errorf("map: %v", err)
	}
}
