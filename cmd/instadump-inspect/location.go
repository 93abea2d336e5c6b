package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/instadump/instadump/replica"
	"github.com/instadump/instadump/replica/s3"
)

// A LOCATION, where a DB replicates: a directory (a replica.NewDir
// store), or s3://BUCKET/PREFIX in S3-compatible storage. For S3 the
// endpoint, region and plain HTTP come from flags or from the URL's query
// (s3://BUCKET/PREFIX?endpoint=HOST:PORT&region=REGION&insecure=1), the
// flags winning; the credentials from the environment, never from the
// command line (which other users of the machine can see).

// The environment variables of S3 credentials (AWS's names).
const (
	envAccessKey = "AWS_ACCESS_KEY_ID"
	envSecretKey = "AWS_SECRET_ACCESS_KEY"
	envRegion    = "AWS_REGION"
)

// defaultEndpoint is the endpoint of s3:// locations that name none.
const defaultEndpoint = "s3.amazonaws.com"

// locationOpts are the flags of commands that read a LOCATION.
type locationOpts struct {
	endpoint, region string
	insecure         bool
	before           string // restore --before
}

func locationFlags(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.replica.endpoint, "endpoint", "", "the S3 server's `host[:port]` for an s3://BUCKET/PREFIX location (default "+defaultEndpoint+", or the URL's endpoint=); credentials come from $"+envAccessKey+" and $"+envSecretKey)
	fs.StringVar(&o.replica.region, "region", "", "the bucket's `region` (default $"+envRegion+", or the URL's region=)")
	fs.BoolVar(&o.replica.insecure, "insecure", false, "plain HTTP instead of TLS, for a test server on the loopback interface (or the URL's insecure=1)")
}

// openLocation returns the store of loc.
func openLocation(loc string, o locationOpts) (replica.Store, error) {
	if !strings.HasPrefix(loc, "s3://") {
		if strings.Contains(loc, "://") {
			return nil, fmt.Errorf("location %q: want a directory or s3://BUCKET/PREFIX", loc)
		}
		return replica.NewDir(loc)
	}
	u, err := url.Parse(loc)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("location %q: want s3://BUCKET/PREFIX[?endpoint=HOST:PORT&region=REGION&insecure=1]", loc)
	}
	cfg := s3.Config{
		Bucket:    u.Host,
		Prefix:    strings.Trim(u.Path, "/"),
		Endpoint:  defaultEndpoint,
		Region:    os.Getenv(envRegion),
		AccessKey: os.Getenv(envAccessKey),
		SecretKey: os.Getenv(envSecretKey),
	}
	q := u.Query()
	for k := range q {
		if k != "endpoint" && k != "region" && k != "insecure" {
			return nil, fmt.Errorf("location %q: unknown parameter %q (want endpoint, region, insecure)", loc, k)
		}
	}
	if v := q.Get("endpoint"); v != "" {
		cfg.Endpoint = v
	}
	if v := q.Get("region"); v != "" {
		cfg.Region = v
	}
	if v := q.Get("insecure"); v != "" {
		if cfg.Insecure, err = strconv.ParseBool(v); err != nil {
			return nil, fmt.Errorf("location %q: insecure=%q: want 1 or 0", loc, v)
		}
	}
	if o.endpoint != "" {
		cfg.Endpoint = o.endpoint
	}
	if o.region != "" {
		cfg.Region = o.region
	}
	cfg.Insecure = cfg.Insecure || o.insecure
	return s3.New(cfg)
}

// onLocation makes a command's run: it opens the LOCATION args[0] and
// runs f on it with a context that Ctrl-C cancels, returning f's exit
// status, or 1 if the location does not open.
func onLocation(f func(ctx context.Context, e *env, st replica.Store, args []string) int) func(*env, []string) int {
	return func(e *env, args []string) int {
		st, err := openLocation(args[0], e.opts.replica)
		if err != nil {
			return e.fail(err)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		return f(ctx, e, st, args)
	}
}
