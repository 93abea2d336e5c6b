package instadump_test

import (
	"fmt"
	"log"
	"slices"
	"strconv"

	"github.com/instadump/instadump"
)

// A Map saves only the keys changed since the last save: here the second
// save writes one key, not ten thousand.
func ExampleNewMap() {
	dir := tempDir()
	db, err := instadump.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	type user struct {
		Name   string
		Visits int
	}
	users, err := instadump.NewMap[int, user](db, "users")
	if err != nil {
		log.Fatal(err)
	}
	for id := range 10_000 {
		users.Set(id, user{Name: "user " + strconv.Itoa(id)})
	}
	full, _ := db.Save()

	u, _ := users.Get(42)
	u.Visits++ // u is a copy: changing it changes nothing stored
	users.Set(42, u)
	users.Delete(7)
	delta, _ := db.Save()
	fmt.Println(users.Len(), delta.Bytes < full.Bytes/100)
	db.Close()

	db, err = instadump.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	users, _ = instadump.NewMap[int, user](db, "users")
	u, _ = users.Get(42)
	_, found := users.Get(7)
	fmt.Println(users.Len(), u.Visits, found)
	// Output:
	// 9999 true
	// 9999 1 false
}

var sessions = instadump.DefMap[string, int]("sessions")

// DefMap declares a Map at package level, in the seed's style.
func ExampleDefMap() {
	dir := tempDir()
	for run := 1; run <= 2; run++ {
		if err := instadump.Setup(dir); err != nil {
			log.Fatal(err)
		}
		sessions.Set(fmt.Sprint("run-", run), run)
		var keys []string
		for k := range sessions.All() {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		fmt.Println(keys)
		instadump.SaveAll()
		instadump.Shutdown()
	}
	// Output:
	// [run-1]
	// [run-1 run-2]
}

// Drop retires a state: the next Save leaves it out, even if nothing else
// changed; older snapshots keep it.
func ExampleDB_Drop() {
	db, err := instadump.Open(tempDir())
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	instadump.NewState(db, "legacy-flag", true)
	instadump.NewState(db, "counter", 1)
	before, _ := db.Save()
	if err := db.Drop("legacy-flag"); err != nil {
		log.Fatal(err)
	}
	after, _ := db.Save()
	fmt.Println(before.States, "states, then", after.States)
	// Output:
	// 2 states, then 1
}

// A field renamed keeps its data through msgpack's alias tag; a type
// changed gets a migration, run once at load: the next Save writes the new
// form.
func ExampleMigrateFrom() {
	dir := tempDir()

	// Version 1 of the program.
	type configV1 struct {
		Host    string
		Timeout int // seconds
	}
	db, _ := instadump.Open(dir)
	instadump.NewState(db, "config", configV1{Host: "example.org", Timeout: 30})
	db.Save()
	db.Close()

	// Version 2 renames Host (the alias reads the old name) and makes the
	// timeout a string with a unit: a type change, so a migration.
	type configV2 struct {
		Server  string `msgpack:"Server,alias:Host"`
		Timeout string
	}
	type configV1Stored struct { // the stored form, as version 1 wrote it
		Server  string `msgpack:"Server,alias:Host"`
		Timeout int
	}
	db, _ = instadump.Open(dir)
	defer db.Close()
	config, err := instadump.NewState(db, "config", configV2{},
		instadump.MigrateFrom(0, func(old configV1Stored) (configV2, error) {
			return configV2{Server: old.Server, Timeout: strconv.Itoa(old.Timeout) + "s"}, nil
		}))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", config.Get())
	// Output:
	// {Server:example.org Timeout:30s}
}
