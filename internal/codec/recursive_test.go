package codec

import (
	"errors"
	"testing"
)

type listNode struct {
	Next *listNode
	N    int
}

type treeNode struct {
	Kids []treeNode
	Tag  map[string]*treeNode
}

// A recursive type is compiled, not handed to msgpack/v5 by a probe that
// met a part of it not built yet; a cyclic value of it is ErrTooDeep, not
// a stack overflow.
func TestRecursiveTypesAreCompiled(t *testing.T) {
	before := probeFallbacks.Load()
	lc, err := For[*listNode]()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := For[treeNode](); err != nil {
		t.Fatal(err)
	}
	if got := probeFallbacks.Load() - before; got != 0 {
		t.Fatalf("%d recursive types handed to msgpack/v5", got)
	}
	n := &listNode{N: 1}
	n.Next = n
	if _, err := lc.Append(nil, &n); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("a cycle: %v", err)
	}
	ok := &listNode{N: 1, Next: &listNode{N: 2}}
	b, err := lc.Append(nil, &ok)
	if err != nil {
		t.Fatal(err)
	}
	var back *listNode
	if err := lc.Decode(b, &back); err != nil || back.Next.N != 2 {
		t.Fatalf("round trip: %v", err)
	}
}
