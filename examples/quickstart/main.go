// Command quickstart is the example of the seed library, as a program:
// two states survive a restart.
//
//	go run ./examples/quickstart   # prints 150 abc, sets testvar1 to 1000, saves
//	go run ./examples/quickstart   # prints 1000 abc
//
// -dir chooses the DB directory; -reset deletes it first.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/instadump/instadump"
)

var (
	testvar1 = instadump.DefState("testvar1", 150)
	testvar2 = instadump.DefState("testvar2", "abc")
)

func main() {
	dir := flag.String("dir", "quickstart.db", "the DB directory")
	reset := flag.Bool("reset", false, "delete the DB directory first")
	flag.Parse()
	if *reset {
		if err := os.RemoveAll(*dir); err != nil {
			log.Fatal(err)
		}
	}
	if err := instadump.Setup(*dir); err != nil {
		log.Fatal(err)
	}
	fmt.Println(testvar1.Get(), testvar2.Get())
	testvar1.Set(1000)
	snap, err := instadump.SaveAll()
	if err != nil {
		log.Fatal(err)
	}
	if err := instadump.Shutdown(); err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "saved snapshot %d to %s; run me again\n", snap.ID, *dir)
}
