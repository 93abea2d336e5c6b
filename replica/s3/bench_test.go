package s3_test

import (
	"fmt"
	"io"
	"testing"

	"github.com/instadump/instadump/replica/replicatest"
	"github.com/instadump/instadump/replica/s3"
)

// Put and Get of 64 MiB objects, from a seekable reader (read at offsets)
// and a plain one (a pooled buffer per part), in parts of 16 MiB.
func BenchmarkPutGet(b *testing.B) {
	cfg := serverConfig(b)
	cfg.PartSize = s3.DefaultPartSize
	s := s3.NewTestStore(b, cfg)
	const size = 64 << 20
	data := replicatest.Data(1, 1<<20)
	for _, plain := range []bool{false, true} {
		b.Run(fmt.Sprintf("Put/plain=%v", plain), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				var r io.Reader = repeatReader(data, size)
				if plain {
					r = &onlyReader{r}
				}
				if err := s.Put(b.Context(), "bench", r, size); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("Get", func(b *testing.B) {
		b.SetBytes(size)
		buf := make([]byte, 256<<10)
		for b.Loop() {
			rc, err := s.Get(b.Context(), "bench")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(io.Discard, rc, buf); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
}
