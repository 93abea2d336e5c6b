// Package replica is where instadump keeps copies of its snapshots off
// the machine: a Store is a flat namespace of immutable objects under
// keys like "a/b/000017.seg", with five operations (Put, Create, Get,
// List, Delete). NewDir gives a Store in a directory, such as a mounted
// network filesystem; package replica/s3 gives one in S3-compatible object
// storage; package replica/replicatest holds the conformance tests every
// Store must pass and a fault-injecting Store for testing what uses one.
//
//	st, err := replica.NewDir("/mnt/backup/db1")
//	err = st.Put(ctx, "seg/000017.seg", f, size)          // replaces
//	err = st.Create(ctx, "snap/000017", r, n)             // errors.Is(err, replica.ErrExists) if taken
//	rc, err := st.Get(ctx, "seg/000017.seg")              // errors.Is(err, replica.ErrNotFound) if absent
//	objs, err := st.List(ctx, "snap/")                    // sorted by key
//	err = st.Delete(ctx, "seg/000012.seg")                // absent is fine
//
// # What a Store guarantees
//
// An object is all or nothing: a reader sees the whole old object or the
// whole new one, never a part, and a failed or cancelled Put leaves the
// old one. Once Put or Create returns nil the object is durable as the
// store defines it (fsynced for a directory; acknowledged for S3).
// Create is a conditional create: of many writers racing to Create one
// key, exactly one succeeds, so a Create can claim a location for one
// writer. Keys follow CheckKey's rules in every store.
//
// # Errors
//
// Errors say what failed, on which key and in which store (its String),
// and wrap a sentinel where one fits:
//
//	ErrNotFound       Get of an absent key
//	ErrExists         Create of a taken key
//	ErrInvalidKey     a key or prefix that breaks CheckKey's rules
//	ErrUnavailable    may pass: the server is down, slow, overloaded (retried already where the store retries)
//	ErrMisconfigured  will not pass by itself: credentials, permissions, a missing bucket or directory
//
// A failed operation whose cause is none of these (an I/O error, say) is
// of unknown duration; context errors are wrapped as they are, so
// errors.Is(err, context.DeadlineExceeded) holds after a deadline.
//
// # Security
//
// A Store trusts its location: whoever can write there can replace any
// object, so what is read back must be verified (instadump's segments and
// manifests carry checksums). Keys cannot name anything outside the store.
// String and errors never contain credentials.
package replica
