package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/instadump/instadump"
	"github.com/instadump/instadump/internal/golden"
	"github.com/instadump/instadump/segment"
)

type profile struct {
	Name    string
	Tags    []string
	Joined  time.Time
	Avatar  []byte
	Balance float64
}

// buildDB makes a DB with three snapshots in dir.
func buildDB(t *testing.T, dir string) {
	t.Helper()
	db, err := instadump.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	counter, _ := instadump.NewState(db, "counter", 150)
	greeting, _ := instadump.NewState(db, "greeting", "abc")
	user, _ := instadump.NewState(db, "user", profile{
		Name: "ada", Tags: []string{"admin", "early"}, Joined: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Avatar: []byte{0xde, 0xad, 0xbe, 0xef}, Balance: 12.5,
	})
	scores, _ := instadump.NewState(db, "scores", map[string]int{"ada": 3})
	visits, _ := instadump.NewMap[string, int](db, "visits")
	visits.Set("ada", 1)
	visits.Set("bob", 2)
	mustSave := func() {
		if _, err := db.Save(); err != nil {
			t.Fatal(err)
		}
	}
	mustSave()
	counter.Set(1000)
	mustSave()
	greeting.Set("hello")
	scores.Set(map[string]int{"ada": 4})
	visits.Set("bob", 3)
	visits.Delete("ada")
	visits.Set("cy", 1)
	_ = user
	mustSave()
}

func runCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut, false)
	return out.String(), errOut.String(), code
}

var timeRE = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	golden.Check(t, name+".golden", []byte(timeRE.ReplaceAllString(got, "TIME")))
}

func TestHumanOutput(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	buildDB(t, dir)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"snapshots", []string{"snapshots", dir}},
		{"states", []string{"states", dir}},
		{"states-1", []string{"states", "--snapshot", "1", dir}},
		{"get-user", []string{"get", dir, "user"}},
		{"get-counter-1", []string{"get", "--snapshot", "1", dir, "counter"}},
		{"get-key", []string{"get", dir, "scores", "--key", "ada"}},
		{"get-map", []string{"get", dir, "visits"}},
		{"get-map-key", []string{"get", dir, "visits", "--key", "bob"}},
		{"get-map-1", []string{"get", "--snapshot", "1", dir, "visits"}},
		{"dump", []string{"dump", dir}},
		{"diff", []string{"diff", dir, "1", "3"}},
		{"segments", []string{"segments", dir}},
		{"manifest", []string{"manifest", dir}},
	} {
		out, errOut, code := runCmd(t, tc.args...)
		if code != 0 || errOut != "" {
			t.Fatalf("%v: exit %d, stderr %q", tc.args, code, errOut)
		}
		checkGolden(t, tc.name, out)
	}
	out, _, code := runCmd(t, "verify", dir)
	if code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("verify: exit %d: %s", code, out)
	}
}

func decodeJSON(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
}

func TestJSONOutput(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	buildDB(t, dir)
	jsonOut := func(args ...string) string {
		out, errOut, code := runCmd(t, append(args, "--json")...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		return out
	}
	var snaps []struct {
		ID       uint64
		States   int
		Bytes    int64 `json:"bytes_written"`
		Segments []uint64
	}
	decodeJSON(t, jsonOut("snapshots", dir), &snaps)
	if len(snaps) != 3 || snaps[2].ID != 3 || snaps[2].States != 5 || snaps[0].Bytes == 0 || len(snaps[2].Segments) != 3 {
		t.Fatalf("snapshots: %+v", snaps)
	}
	var states []struct {
		Name      string
		Kind      string
		Segments  []uint64
		ChangedIn uint64 `json:"changed_in"`
	}
	decodeJSON(t, jsonOut("states", dir), &states)
	if len(states) != 5 || states[0].Name != "counter" || states[0].Kind != "value" || states[0].ChangedIn != 2 || states[1].ChangedIn != 3 || len(states[0].Segments) != 1 {
		t.Fatalf("states: %+v", states)
	}
	var user map[string]any
	decodeJSON(t, jsonOut("get", dir, "user"), &user)
	if user["Name"] != "ada" || user["Joined"] != "2026-01-02T03:04:05Z" || user["Avatar"] != "3q2+7w==" || user["Balance"] != 12.5 {
		t.Fatalf("user: %v", user)
	}
	var dump map[string]any
	decodeJSON(t, jsonOut("dump", "--snapshot", "2", dir), &dump)
	if dump["counter"] != float64(1000) || dump["greeting"] != "abc" {
		t.Fatalf("dump of snapshot 2: %v", dump)
	}
	var diffs []struct{ Name, Change string }
	decodeJSON(t, jsonOut("diff", dir, "2", "3"), &diffs)
	if fmt.Sprint(diffs) != "[{greeting changed} {scores changed} {visits changed}]" {
		t.Fatalf("diff: %v", diffs)
	}
	var segs []struct {
		File      string
		Orphan    bool
		Snapshots []uint64
	}
	decodeJSON(t, jsonOut("segments", dir), &segs)
	if len(segs) != 3 || segs[0].Orphan || len(segs[0].Snapshots) != 3 {
		t.Fatalf("segments: %+v", segs)
	}
	var man struct {
		File    string
		Records []struct{ Kind string }
	}
	decodeJSON(t, jsonOut("manifest", dir), &man)
	if len(man.Records) != 3 || man.Records[0].Kind != "full" || man.Records[1].Kind != "delta" {
		t.Fatalf("manifest: %+v", man)
	}
	var visits struct {
		Kind    string
		Entries int64
		Deltas  int
	}
	var all []json.RawMessage
	decodeJSON(t, jsonOut("states", dir), &all)
	decodeJSON(t, string(all[4]), &visits)
	if visits.Kind != "map" || visits.Entries != 2 || visits.Deltas != 1 {
		t.Fatalf("the map's state: %+v", visits)
	}
	if _, errOut, code := runCmd(t, "get", dir, "visits", "--key", "ada"); code != 1 || !strings.Contains(errOut, "no such key") {
		t.Fatalf("a deleted key: exit %d, %s", code, errOut)
	}
	// --key on a value that is not a map: say so, not "not valid msgpack".
	if _, errOut, code := runCmd(t, "get", dir, "counter", "--key", "ada"); code != 1 || !strings.Contains(errOut, "not a Map") || !strings.Contains(errOut, "--key applies only to") || strings.Contains(errOut, "msgpack") {
		t.Fatalf("--key on an int: exit %d, %s", code, errOut)
	}
	var ver struct {
		OK       bool
		Problems []string
	}
	decodeJSON(t, jsonOut("verify", dir), &ver)
	if !ver.OK || len(ver.Problems) != 0 {
		t.Fatalf("verify: %+v", ver)
	}
}

func TestVerifyFindsFlippedBit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	buildDB(t, dir)
	seg := filepath.Join(dir, segment.FileName(1))
	data, _ := os.ReadFile(seg)
	data[segment.HeaderSize+segment.ChunkHeaderSize+1] ^= 0x04
	os.WriteFile(seg, data, 0o644)
	out, _, code := runCmd(t, "verify", dir)
	if code != 1 || !strings.Contains(out, "DAMAGED") || !strings.Contains(out, seg) {
		t.Fatalf("verify of a flipped bit: exit %d\n%s", code, out)
	}
	// The other commands say what is damaged rather than crash.
	for _, args := range [][]string{{"dump", "--snapshot", "1", dir}, {"get", "--snapshot", "1", dir, "counter"}} {
		_, errOut, code := runCmd(t, args...)
		if code == 0 && errOut == "" {
			t.Fatalf("%v on damaged data: no complaint", args)
		}
		if !strings.Contains(errOut, seg) {
			t.Fatalf("%v: stderr does not name %s: %s", args, seg, errOut)
		}
	}
	if _, _, code := runCmd(t, "snapshots", dir); code != 0 {
		t.Fatalf("snapshots on a DB with one damaged value: exit %d", code)
	}
}

func TestUsage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	buildDB(t, dir)
	for _, args := range [][]string{
		{}, {"frobnicate", dir}, {"states", "--bogus", dir}, {"get", dir}, {"diff", dir, "1", "x"}, {"snapshots"},
	} {
		if _, errOut, code := runCmd(t, args...); code != 2 || !strings.Contains(errOut, "usage") && !strings.Contains(errOut, "want") {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	for _, c := range commands {
		out, errOut, code := runCmd(t, c.name, "--help")
		if code != 0 || strings.Count(out, "usage: instadump-inspect "+c.name) != 1 || errOut != "" {
			t.Fatalf("%s --help: exit %d\n%s\nstderr: %s", c.name, code, out, errOut)
		}
	}
	if out, _, code := runCmd(t, "--help"); code != 0 || !strings.Contains(out, "verify") {
		t.Fatalf("--help: %d %s", code, out)
	}
	if _, errOut, code := runCmd(t, "snapshots", filepath.Join(dir, "missing")); code != 1 || errOut == "" {
		t.Fatalf("missing dir: exit %d", code)
	}
}

// A directory that is not a DB, or not there, is said to be so: not an
// empty DB, not damage.
func TestNotADB(t *testing.T) {
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "notes.txt"), []byte("x"), 0o644)
	for _, args := range [][]string{{"snapshots", empty}, {"verify", empty}, {"states", empty}, {"manifest", empty}} {
		out, errOut, code := runCmd(t, args...)
		if code != 1 || !strings.Contains(errOut, "not an instadump directory") || strings.Contains(out, "DAMAGED") {
			t.Fatalf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	out, errOut, code := runCmd(t, "verify", filepath.Join(empty, "nowhere"))
	if code != 1 || strings.Contains(out, "DAMAGED") || !strings.Contains(errOut, "no such file") {
		t.Fatalf("verify of a missing directory: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// The tools take retention from the manifest: a DB saved WithRetain(10)
// shows its 10 snapshots, its live segments are not orphans, and damage
// in a segment only an older snapshot uses is found.
func TestRetentionFromTheManifest(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	db, err := instadump.Open(dir, instadump.WithRetain(10))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		s, _ := instadump.NewState(db, fmt.Sprint("s", i), i)
		s.Set(i + 1)
		if _, err := db.Save(); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	out, _, code := runCmd(t, "snapshots", "--json", dir)
	var snaps []struct{ ID uint64 }
	decodeJSON(t, out, &snaps)
	if code != 0 || len(snaps) != 10 {
		t.Fatalf("snapshots: exit %d, %d snapshots", code, len(snaps))
	}
	out, _, _ = runCmd(t, "segments", dir)
	if strings.Contains(out, "orphan") {
		t.Fatalf("live segments called orphans:\n%s", out)
	}
	seg := filepath.Join(dir, segment.FileName(2))
	data, _ := os.ReadFile(seg)
	data[segment.HeaderSize+segment.ChunkHeaderSize] ^= 0x04
	os.WriteFile(seg, data, 0o644)
	out, _, code = runCmd(t, "verify", dir)
	if code != 1 || !strings.Contains(out, "DAMAGED") || !strings.Contains(out, seg) {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
}

// The commands work while another process keeps saving to the DB.
func TestWhileAnotherProcessSaves(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	buildDB(t, dir)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "INSTADUMP_SAVER_DIR="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Second)
	rounds := 0
	for ; time.Now().Before(deadline) || rounds < 5; rounds++ {
		for _, args := range [][]string{{"snapshots", dir}, {"dump", dir}, {"segments", dir}, {"manifest", dir}, {"verify", dir}, {"states", dir}} {
			out, errOut, code := runCmd(t, args...)
			if code != 0 {
				t.Fatalf("round %d, %v: exit %d\n%s%s", rounds, args, code, out, errOut)
			}
		}
	}
	out, _, _ := runCmd(t, "snapshots", "--json", dir)
	var snaps []struct{ ID uint64 }
	decodeJSON(t, out, &snaps)
	if snaps[len(snaps)-1].ID <= 3 {
		t.Fatal("the other process saved nothing")
	}
}

func TestMain(m *testing.M) {
	if dir := os.Getenv("INSTADUMP_SAVER_DIR"); dir != "" {
		saver(dir)
		return
	}
	os.Exit(m.Run())
}

// saver keeps changing and saving until it is killed.
func saver(dir string) {
	db, err := instadump.Open(dir, instadump.WithRetain(2))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	counter, _ := instadump.NewState(db, "counter", 0)
	for i := 0; ; i++ {
		counter.Set(i)
		if _, err := db.Save(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		time.Sleep(time.Millisecond) // hundreds of saves a second
	}
}

// seatKey is a struct key of a Map, saved as a msgpack map of its fields.
type seatKey struct {
	Org string
	ID  int8
	A   [2]uint16
	B   bool
}

// --key takes any JSON spelling of a key that is not a string: object
// members in any order, spaces anywhere, and a string key as its JSON
// string too.
func TestGetKeyAnySpelling(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	db, err := instadump.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	seats, _ := instadump.NewMap[seatKey, string](db, "seats")
	seats.Set(seatKey{Org: "a", ID: -128, A: [2]uint16{65535, 0}, B: true}, "window")
	seats.Set(seatKey{Org: "<a&b>", ID: 1}, "aisle")
	big, _ := instadump.NewMap[uint64, string](db, "big")
	big.Set(255, "ff")
	big.Set(1<<64-1, "max")
	big.Set(0, "zero")
	names, _ := instadump.NewMap[string, string](db, "names")
	names.Set("a b", "spaced")
	names.Set(`"a b"`, "quoted")
	names.Set("c", "see")
	if _, err := db.Save(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, tc := range []struct{ state, key, want string }{
		{"seats", `{"A": [65535, 0], "B": true, "ID": -128, "Org": "a"}`, `"window"`},
		{"seats", `{"Org":"a","ID":-128,"A":[65535,0],"B":true}`, `"window"`},
		{"seats", `{"Org":"<a&b>","ID":1,"A":[0,0],"B":false}`, `"aisle"`},
		{"big", " 255", `"ff"`},
		{"big", "2.55e2", `"ff"`},
		{"big", "255.0", `"ff"`},
		{"big", "18446744073709551615", `"max"`},
		{"big", "0", `"zero"`},
		{"big", "-0", `"zero"`},
		{"names", "a b", `"spaced"`},
		{"names", `"a b"`, `"quoted"`}, // a key of that text comes first
		{"names", `"c"`, `"see"`},
	} {
		out, errOut, code := runCmd(t, "get", dir, tc.state, "--key", tc.key)
		if code != 0 || strings.TrimSpace(out) != tc.want {
			t.Errorf("get %s --key %s: exit %d, %q, %s", tc.state, tc.key, code, out, errOut)
		}
	}
	if _, errOut, code := runCmd(t, "get", dir, "seats", "--key", `{"Org":"a","ID":-127,"A":[65535,0],"B":true}`); code != 1 || !strings.Contains(errOut, "no such key") {
		t.Fatalf("another key: exit %d, %s", code, errOut)
	}
	// A key deleted in a delta is deleted under its own text, not under
	// the JSON reading of another's.
	db, err = instadump.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	names, _ = instadump.NewMap[string, string](db, "names")
	names.Delete("a b")
	if _, err := db.Save(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if out, errOut, code := runCmd(t, "get", dir, "names", "--key", `"a b"`); code != 0 || strings.TrimSpace(out) != `"quoted"` {
		t.Fatalf(`get --key '"a b"' after "a b" was deleted: exit %d, %q, %s`, code, out, errOut)
	}
	if _, errOut, code := runCmd(t, "get", dir, "names", "--key", "a b"); code != 1 || !strings.Contains(errOut, "deleted") {
		t.Fatalf("get --key 'a b' after it was deleted: exit %d, %s", code, errOut)
	}
}
