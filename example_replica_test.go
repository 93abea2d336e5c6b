package instadump_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/instadump/instadump"
	"github.com/instadump/instadump/replica"
)

// Replicate every snapshot to a store off the machine (here a directory,
// such as a mounted network filesystem; package replica/s3 gives S3), and
// wait until one is there.
func ExampleWithReplica() {
	st, err := replica.NewDir(tempDir()) // an existing directory
	if err != nil {
		log.Fatal(err)
	}

	db, err := instadump.Open(tempDir(), instadump.WithReplica(st))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	counter, _ := instadump.NewState(db, "counter", 0)
	counter.Set(42)
	snap, err := db.Save() // durable on the local disk; shipping runs behind
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := db.WaitReplicated(ctx, snap.ID); err != nil {
		log.Fatal(err)
	}
	s := db.ReplicationStatus()
	fmt.Println("snapshot", s.Shipped, "is in the replica; behind by", s.Behind, "bytes")
	// Output: snapshot 1 is in the replica; behind by 0 bytes
}

// After the machine is lost, Restore writes the newest snapshot of the
// replica into a new or empty directory, which opens as any DB directory.
func ExampleRestore() {
	st, err := replica.NewDir(tempDir())
	if err != nil {
		log.Fatal(err)
	}
	// A DB that replicates, and then is lost.
	lost := tempDir()
	db, err := instadump.Open(lost, instadump.WithReplica(st))
	if err != nil {
		log.Fatal(err)
	}
	todo, _ := instadump.NewState(db, "todo", []string{"write tests"})
	todo.Set([]string{"restore", "write tests"})
	snap, _ := db.Save()
	db.WaitReplicated(context.Background(), snap.ID)
	db.Close()
	os.RemoveAll(lost)

	dir := tempDir()
	restored, err := instadump.Restore(context.Background(), st, dir)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("restored snapshot", restored.ID)
	db, err = instadump.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	todo, _ = instadump.NewState(db, "todo", []string(nil))
	fmt.Println(todo.Get())
	// Output:
	// restored snapshot 1
	// [restore write tests]
}
