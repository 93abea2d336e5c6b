package inspect_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"testing"

	"github.com/instadump/instadump"
	"github.com/instadump/instadump/inspect"
)

// A Map's JSON, streamed from its base and chain, holds exactly what the
// Map holds: keys set again in the chain once, with their last value;
// keys deleted in it not at all, even when set again before or after.
func TestMapJSONMergesChain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	db, err := instadump.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := instadump.NewMap[string, int](db, "m")
	if err != nil {
		t.Fatal(err)
	}
	save := func() {
		t.Helper()
		if _, err := db.Save(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		m.Set(fmt.Sprint("k", i), i)
	}
	save()
	for i := range 300 {
		switch i % 5 {
		case 0:
			m.Set(fmt.Sprint("k", i), -i)
		case 1:
			m.Delete(fmt.Sprint("k", i))
		}
	}
	m.Set("new", 1)
	save()
	m.Set("k1", 11) // deleted in the first delta, set again
	m.Delete("new")
	m.Set("k0", 100)
	save()
	want := maps.Collect(m.All())
	db.Close()

	d, err := inspect.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var buf bytes.Buffer
	if err := d.WriteJSON(&buf, 0, "m"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"k0":`, `"k1":`, `"k5":`} {
		if n := bytes.Count(buf.Bytes(), []byte(k)); n != 1 {
			t.Fatalf("%s is in the JSON %d times", k, n)
		}
	}
	var got map[string]int
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("JSON of the map: %d entries, the Map %d; first differences: %v", len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b map[string]int) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			out = append(out, fmt.Sprintf("%s: %d vs %d (%v)", k, v, w, ok))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k+" missing")
		}
	}
	return out[:min(len(out), 5)]
}
