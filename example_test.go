package instadump_test

import (
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/instadump/instadump"
)

// tempDir returns a new, empty directory. The examples leave it behind:
// TestMain points TMPDIR at a directory of the test run's own, and removes
// that when the tests end.
func tempDir() string {
	dir, err := os.MkdirTemp("", "instadump-example-")
	if err != nil {
		log.Fatal(err)
	}
	return dir
}

// Open a DB, register a state, change it and save; the next Open finds it.
func ExampleOpen() {
	dir := tempDir()

	db, err := instadump.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	counter, err := instadump.NewState(db, "counter", 150)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(counter.Get())
	counter.Update(func(n int) int { return n + 1 })
	if _, err := db.Save(); err != nil {
		log.Fatal(err)
	}
	db.Close()

	db, err = instadump.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	counter, err = instadump.NewState(db, "counter", 150)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(counter.Get())
	// Output:
	// 150
	// 151
}

// Save makes a durable snapshot; Reload goes back to it.
func ExampleDB_Save() {
	db, err := instadump.Open(tempDir())
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	todo, _ := instadump.NewState(db, "todo", []string{"write tests"})
	snap, err := db.Save()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("snapshot", snap.ID, "holds", snap.States, "state")

	todo.Set(append([]string{"fix bug"}, todo.Get()...)) // a new slice, never in place
	fmt.Println(todo.Get())
	if err := db.Reload(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(todo.Get())
	// Output:
	// snapshot 1 holds 1 state
	// [fix bug write tests]
	// [write tests]
}

// Atomically changes several states together, or not at all.
func ExampleDB_Atomically() {
	db, err := instadump.Open(tempDir())
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	alice, _ := instadump.NewState(db, "alice", 100)
	bob, _ := instadump.NewState(db, "bob", 0)

	transfer := func(amount int) error {
		return db.Atomically(func(tx *instadump.Tx) error {
			if alice.GetIn(tx) < amount {
				return errors.New("insufficient funds")
			}
			alice.SetIn(tx, alice.GetIn(tx)-amount)
			bob.SetIn(tx, bob.GetIn(tx)+amount)
			return nil
		})
	}
	fmt.Println(transfer(30), alice.Get(), bob.Get())
	fmt.Println(transfer(500), alice.Get(), bob.Get())
	// Output:
	// <nil> 70 30
	// insufficient funds 70 30
}

var greeting = instadump.DefState("greeting", "hello")

// DefState declares states at package level; Setup loads them from the
// default DB, SaveAll saves them, Shutdown closes it.
func ExampleDefState() {
	dir := tempDir()
	for run := 1; run <= 2; run++ {
		if err := instadump.Setup(dir); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("run %d: %s\n", run, greeting.Get())
		greeting.Set("welcome back")
		if _, err := instadump.SaveAll(); err != nil {
			log.Fatal(err)
		}
		if err := instadump.Shutdown(); err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// run 1: hello
	// run 2: welcome back
}

// ReloadFrom goes back to an older retained snapshot.
func ExampleDB_ReloadFrom() {
	db, err := instadump.Open(tempDir(), instadump.WithRetain(5))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	version, _ := instadump.NewState(db, "config-version", "v1")
	first, _ := db.Save()
	version.Set("v2")
	db.Save()

	snaps, _ := db.Snapshots()
	fmt.Println(len(snaps), "snapshots retained")
	if err := db.ReloadFrom(first.ID); err != nil {
		log.Fatal(err)
	}
	fmt.Println(version.Get())
	// Output:
	// 2 snapshots retained
	// v1
}
