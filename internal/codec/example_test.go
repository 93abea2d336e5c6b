package codec_test

import (
	"errors"
	"fmt"

	"github.com/instadump/instadump/internal/codec"
)

func ExampleFor() {
	type User struct {
		Name string
		Age  int8 `msgpack:"age"`
	}
	c, err := codec.For[map[string]User]()
	if err != nil {
		panic(err)
	}
	in := map[string]User{"bob": {Name: "Bob", Age: 42}}
	data, err := c.Append(nil, &in)
	if err != nil {
		panic(err)
	}
	var out map[string]User
	if err := c.Decode(data, &out); err != nil {
		panic(err)
	}
	fmt.Printf("%x\n%+v\n", data, out)

	// 300 does not fit an int8: an error, where msgpack/v5 stores 44.
	big, _ := codec.For[map[string]map[string]int]()
	data, _ = big.Append(nil, &map[string]map[string]int{"bob": {"age": 300}})
	err = c.Decode(data, &out)
	fmt.Println(errors.Is(err, codec.ErrMismatch))
	fmt.Println(err)
	// Output:
	// 81a3626f6282a44e616d65a3426f62a3616765d02a
	// map[bob:{Name:Bob Age:42}]
	// true
	// codec: type mismatch at ["bob"].Age (offset 10): msgpack integer 300 into int8
}
