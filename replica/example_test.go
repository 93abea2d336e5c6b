package replica_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/instadump/instadump/replica"
)

// A directory store: Put replaces, Create claims a key once, List sorts.
func ExampleNewDir() {
	dir, err := os.MkdirTemp("", "replica-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	st, err := replica.NewDir(dir)
	if err != nil {
		log.Fatal(err)
	}
	seg := "db1/seg/000017.seg"
	if err := st.Put(ctx, seg, strings.NewReader("segment bytes"), 13); err != nil {
		log.Fatal(err)
	}
	// The first writer to Create a key owns it.
	commit := "db1/snap/000017"
	fmt.Println(st.Create(ctx, commit, strings.NewReader("mine"), 4))
	err = st.Create(ctx, commit, strings.NewReader("theirs"), 6)
	fmt.Println(errors.Is(err, replica.ErrExists))

	objs, err := st.List(ctx, "db1/")
	if err != nil {
		log.Fatal(err)
	}
	for _, o := range objs {
		fmt.Println(o.Key, o.Size)
	}

	rc, err := st.Get(ctx, commit)
	if err != nil {
		log.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b))

	if err := st.Delete(ctx, seg); err != nil {
		log.Fatal(err)
	}
	_, err = st.Get(ctx, seg)
	fmt.Println(errors.Is(err, replica.ErrNotFound))
	// Output:
	// <nil>
	// true
	// db1/seg/000017.seg 13
	// db1/snap/000017 4
	// mine
	// true
}
