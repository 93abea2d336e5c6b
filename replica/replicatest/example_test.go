package replicatest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/replica/replicatest"
)

// A FaultStore fails what a test chooses: here the second upload, with a
// server error that may pass, and then every operation while the server
// is down.
func ExampleFaultStore() {
	ctx := context.Background()
	st := replicatest.NewFaultStore(replicatest.NewMemStore())
	st.Inject(replicatest.Fault{Ops: replicatest.OpUpload, N: 2, Err: replicatest.ErrTransient})

	for _, key := range []string{"a", "b", "c"} {
		err := st.Put(ctx, key, strings.NewReader("x"), 1)
		fmt.Println(key, err == nil, errors.Is(err, replica.ErrUnavailable))
	}

	st.SetDown(true)
	_, err := st.List(ctx, "")
	fmt.Println(errors.Is(err, replicatest.ErrDown))
	st.SetDown(false)

	objs, _ := st.List(ctx, "")
	fmt.Println(len(objs), st.Count(replicatest.OpAll), st.Injected(replicatest.OpAll))
	// Output:
	// a true false
	// b false true
	// c true false
	// true
	// 2 5 2
}
