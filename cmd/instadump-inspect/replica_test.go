package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/instadump/instadump"
	"github.com/instadump/instadump/internal/versitygw"
	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/replica/s3"
)

// buildReplicated makes a DB in dir that replicates its three snapshots
// to st, and returns their times and its lineage.
func buildReplicated(t *testing.T, dir string, st replica.Store) ([]time.Time, string) {
	t.Helper()
	db, err := instadump.Open(dir, instadump.WithReplica(st))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	counter, _ := instadump.NewState(db, "counter", 150)
	greeting, _ := instadump.NewState(db, "greeting", "abc")
	visits, _ := instadump.NewMap[string, int](db, "visits")
	visits.Set("ada", 1)
	var times []time.Time
	save := func() {
		s, err := db.Save()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // a hang guard, not a threshold
		defer cancel()
		if err := db.WaitReplicated(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		times = append(times, s.Time)
	}
	save()
	counter.Set(1000)
	save()
	greeting.Set("hello")
	visits.Set("bob", 2)
	save()
	return times, db.ReplicationStatus().Lineage
}

func TestReplicaCommands(t *testing.T) {
	storeDir := t.TempDir()
	st, err := replica.NewDir(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	times, lineage := buildReplicated(t, filepath.Join(t.TempDir(), "db"), st)
	restored := t.TempDir()
	normalize := func(s string) string {
		s = strings.ReplaceAll(s, storeDir, "STORE")
		s = strings.ReplaceAll(s, restored, "RESTORED")
		return strings.ReplaceAll(s, lineage[:8], "LINEAGE")
	}
	for _, tc := range []struct {
		golden string
		args   []string
		then   []string // a command on what was restored
		want   string   // in then's output
	}{
		{golden: "replica-snapshots", args: []string{"replica-snapshots", storeDir}},
		{golden: "replica-verify", args: []string{"replica-verify", storeDir}},
		{golden: "restore", args: []string{"restore", storeDir, filepath.Join(restored, "newest")},
			then: []string{"get", filepath.Join(restored, "newest"), "greeting"}, want: `"hello"`},
		{golden: "restore-2", args: []string{"restore", "--snapshot", "2", storeDir, filepath.Join(restored, "two")},
			then: []string{"dump", filepath.Join(restored, "two")}, want: `"counter": 1000`},
		{golden: "restore-before", args: []string{"restore", storeDir, filepath.Join(restored, "before"), "--before", times[0].Format(time.RFC3339Nano)},
			then: []string{"get", filepath.Join(restored, "before"), "counter"}, want: "150"},
	} {
		out, errOut, code := runCmd(t, tc.args...)
		if code != 0 || errOut != "" {
			t.Fatalf("%v: exit %d, stderr %q", tc.args, code, errOut)
		}
		checkGolden(t, tc.golden, normalize(out))
		if tc.then != nil {
			out, errOut, code := runCmd(t, tc.then...)
			if code != 0 || !strings.Contains(out, tc.want) {
				t.Fatalf("%v after %v: exit %d, %q%s; want %q", tc.then, tc.args, code, out, errOut, tc.want)
			}
		}
	}
	out, _, code := runCmd(t, "replica-snapshots", "--json", storeDir)
	var snaps []struct {
		ID       uint64
		Lineage  string
		Kind     string
		States   int
		Segments []uint64
		Problem  string
	}
	if err := json.Unmarshal([]byte(out), &snaps); err != nil || code != 0 {
		t.Fatalf("replica-snapshots --json: %v\n%s", err, out)
	}
	if len(snaps) != 3 || snaps[2].ID != 3 || snaps[2].Lineage != lineage || snaps[0].Kind != "full" || snaps[2].States != 3 || snaps[2].Problem != "" {
		t.Fatalf("replica-snapshots --json: %+v", snaps)
	}
	out, _, code = runCmd(t, "replica-verify", "--json", storeDir)
	var ver struct {
		OK       bool
		Problems []string
	}
	if err := json.Unmarshal([]byte(out), &ver); err != nil || code != 0 || !ver.OK {
		t.Fatalf("replica-verify --json: %v %+v", err, ver)
	}
}

func TestReplicaCommandErrors(t *testing.T) {
	storeDir := t.TempDir()
	st, _ := replica.NewDir(storeDir)
	buildReplicated(t, filepath.Join(t.TempDir(), "db"), st)
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), []byte("x"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		want string // in stderr
	}{
		{[]string{"restore", storeDir, full}, 1, "not empty"},
		{[]string{"restore", "--snapshot", "99", storeDir, filepath.Join(t.TempDir(), "r")}, 1, "no snapshot 99"},
		{[]string{"restore", "--before", "2000-01-01T00:00:00Z", storeDir, filepath.Join(t.TempDir(), "r")}, 1, "no complete snapshot saved at or before"},
		{[]string{"restore", "--before", "yesterday", storeDir, filepath.Join(t.TempDir(), "r")}, 2, "want a time"},
		{[]string{"restore", "--before", "2000-01-01T00:00:00Z", "--snapshot", "1", storeDir, filepath.Join(t.TempDir(), "r")}, 2, "not both"},
		{[]string{"restore", storeDir}, 2, "want 2 argument(s)"},
		{[]string{"replica-snapshots", filepath.Join(storeDir, "missing")}, 1, "does not exist"},
		{[]string{"replica-snapshots", "ftp://host/x"}, 1, "want a directory or s3://"},
		{[]string{"replica-snapshots", "s3://bucket/p?color=red"}, 1, `unknown parameter "color"`},
		{[]string{"replica-snapshots", "s3:///p"}, 1, "want s3://BUCKET/PREFIX"},
		{[]string{"replica-snapshots", "s3://bucket/p?insecure=maybe"}, 1, "want 1 or 0"},
		{[]string{"replica-snapshots", t.TempDir()}, 1, "holds no replicated DB"},
		{[]string{"replica-verify", t.TempDir()}, 1, "holds no replicated DB"},
	} {
		out, errOut, code := runCmd(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d saying %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
}

// Damage in the store is found by replica-verify, and restore refuses it.
func TestReplicaVerifyFindsDamage(t *testing.T) {
	storeDir := t.TempDir()
	st, _ := replica.NewDir(storeDir)
	buildReplicated(t, filepath.Join(t.TempDir(), "db"), st)
	objs, _ := st.List(context.Background(), "")
	var seg string
	for _, o := range objs {
		if kind, _, id, _, _ := replica.ParseKey(o.Key); kind == "seg" && id == 3 {
			seg = o.Key
		}
	}
	path := filepath.Join(storeDir, filepath.FromSlash(seg))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[40] ^= 0x10
	os.WriteFile(path, b, 0o644)
	out, _, code := runCmd(t, "replica-verify", storeDir)
	if code != 1 || !strings.Contains(out, "DAMAGED") || !strings.Contains(out, seg) {
		t.Fatalf("replica-verify of a flipped bit: exit %d\n%s", code, out)
	}
	r := filepath.Join(t.TempDir(), "r")
	if _, errOut, code := runCmd(t, "restore", storeDir, r); code != 1 || !strings.Contains(errOut, "corrupt") {
		t.Fatalf("restore of a damaged snapshot: exit %d, %s", code, errOut)
	}
	if _, err := os.Stat(r); !os.IsNotExist(err) {
		t.Fatalf("a failed restore left %s", r)
	}
	if out, _, code := runCmd(t, "restore", "--snapshot", "2", storeDir, r); code != 0 {
		t.Fatalf("restore of an older intact snapshot: exit %d %s", code, out)
	}
}

// s3:// locations: TLS unless asked otherwise, flags over the query,
// credentials from the environment and never shown.
func TestOpenLocation(t *testing.T) {
	const secret = "s3cr3t-of-the-test-never-shown"
	t.Setenv(envAccessKey, "AKIDTEST")
	t.Setenv(envSecretKey, secret)
	for _, tc := range []struct {
		loc  string
		o    locationOpts
		want string
	}{
		{"s3://bucket/a/b", locationOpts{}, "s3://bucket/a/b at https://s3.amazonaws.com"},
		{"s3://bucket/a?endpoint=127.0.0.1:9000", locationOpts{}, "s3://bucket/a at https://127.0.0.1:9000"},
		{"s3://bucket/a?endpoint=127.0.0.1:9000&insecure=1", locationOpts{}, "s3://bucket/a at http://127.0.0.1:9000"},
		{"s3://bucket/a?endpoint=127.0.0.1:9000", locationOpts{endpoint: "[::1]:7070", insecure: true}, "s3://bucket/a at http://[::1]:7070"},
		{"s3://bucket", locationOpts{}, "s3://bucket/ at https://s3.amazonaws.com"},
	} {
		st, err := openLocation(tc.loc, tc.o)
		if err != nil {
			t.Fatalf("%s: %v", tc.loc, err)
		}
		if st.String() != tc.want {
			t.Errorf("%s: %q, want %q", tc.loc, st.String(), tc.want)
		}
	}
}

// The commands on a real S3 server (versitygw), credentials from the
// environment.
func TestReplicaCommandsS3(t *testing.T) {
	cfg := versitygw.Config(t)
	st, err := s3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	buildReplicated(t, filepath.Join(t.TempDir(), "db"), st)
	t.Setenv(envAccessKey, cfg.AccessKey)
	t.Setenv(envSecretKey, cfg.SecretKey)
	loc := "s3://" + cfg.Bucket + "/" + cfg.Prefix + "?endpoint=" + cfg.Endpoint + "&region=us-east-1"
	if cfg.Insecure {
		loc += "&insecure=1"
	}
	// Wrong credentials: a clear error, and the secret shows nowhere.
	t.Setenv(envSecretKey, "wrong-"+cfg.SecretKey)
	_, errOut, code := runCmd(t, "replica-snapshots", loc)
	if code != 1 || !strings.Contains(errOut, "misconfigured") || strings.Contains(errOut, cfg.SecretKey) {
		t.Fatalf("wrong credentials: exit %d, %s", code, errOut)
	}
	t.Setenv(envSecretKey, cfg.SecretKey)
	r := filepath.Join(t.TempDir(), "r")
	for _, args := range [][]string{
		{"replica-snapshots", loc},
		{"replica-verify", loc},
		{"restore", loc, r},
		{"get", r, "greeting"},
	} {
		out, errOut, code := runCmd(t, args...)
		if code != 0 || strings.Contains(out+errOut, cfg.SecretKey) {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
}
