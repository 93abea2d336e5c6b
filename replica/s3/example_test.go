package s3_test

import (
	"context"
	"errors"
	"log"
	"os"

	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/replica/s3"
)

// A store under a prefix of a bucket. The first call shows whether the
// endpoint, credentials and bucket are right.
func ExampleNew() {
	st, err := s3.New(s3.Config{
		Endpoint:  "s3.eu-west-1.amazonaws.com",
		Bucket:    "backups",
		Prefix:    "instadump/db1",
		AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"),
		SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
		Region:    "eu-west-1",
	})
	if err != nil {
		log.Fatal(err) // the configuration is wrong, and the error says how
	}
	ctx := context.Background()
	f, err := os.Open("db/000017.seg")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		log.Fatal(err)
	}
	// An *os.File is read at offsets: no copy in memory, and a failed part
	// is re-read for its retry.
	err = st.Put(ctx, "seg/000017.seg", f, fi.Size())
	switch {
	case errors.Is(err, replica.ErrUnavailable):
		log.Print(err) // retried already: try again later
	case errors.Is(err, replica.ErrMisconfigured):
		log.Fatal(err) // fix the credentials, bucket or region: the error says which
	case err != nil:
		log.Fatal(err)
	}
}
