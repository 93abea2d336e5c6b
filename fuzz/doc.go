// Package fuzz holds instadump's crash-recovery tests. Run one of its fuzz
// targets with
//
//	go test -fuzz=FuzzCrashRecovery ./fuzz
//	go test -fuzz=FuzzMapCrashRecovery ./fuzz
//
// Plain go test runs each target on its seed corpus under testdata/. The
// decoders' fuzz targets live beside them: FuzzSegment in segment/,
// FuzzManifest and FuzzCurrent in manifest/, FuzzJSON in inspect/,
// FuzzCommit in replica/, FuzzDifferential and FuzzDecode in
// internal/codec/.
//
// The tests, against a model of what each acknowledged save holds:
//
//   - TestCrashPointsEnumerated: five workloads on the crashable MemFS
//     (internal/vfs), a power loss before each of their mutating
//     operations, recovery from 21 crash states at each: synced data only;
//     shares of unsynced blocks and of unsynced name operations (create,
//     mkdir, rename, remove: any subset, in order) kept; name operations
//     alone; any unsynced write torn at any byte or zeroed; the last write
//     torn at five cut points or zeroed. A directory whose own name was
//     never synced is lost with all in it. Recovery must give the last
//     acknowledged snapshot or the one in flight, every other retained
//     snapshot as acknowledged, no temp file or orphan, and take a save.
//   - TestCrashMapPointsEnumerated: the same for Maps, through the public
//     API (instadump.Open with WithFS over the MemFS): six workloads (a
//     Map growing by sets; sets and deletes, keys set and deleted again
//     in one save; small saves until one rewrites the base; a chain moved
//     by compactions of the segments; reopens, which roll the manifest
//     over, with ReloadFrom; a Map of accounts and States changed together
//     by Atomically transfers, their total kept), every crash state of
//     every crash point checked key by key against the model, every
//     retained snapshot through ReloadFrom. The chain on disk shows that
//     the rewrite and the moves happen.
//   - FuzzCrashRecovery: a workload, a crash point and a crash state
//     decoded from the input; FuzzMapCrashRecovery likewise for Maps.
//   - TestCrashInjectedErrors: ENOSPC and EIO at every operation index;
//     then a power loss, in which a failed fsync has lost its data for
//     good (a retried fsync that succeeds proves nothing).
//     TestCrashMapInjectedErrors does it to the Map workloads: a failed
//     save keeps its keys in memory, and the next save writes them.
//   - TestCrashBitFlips: flipped bits are found, never read as data.
//   - TestCrashKill9: kill -9 of a saving child process, whose
//     transactions also move amounts between the keys of a Map, checked
//     key by key.
//   - TestCrashFullDisk: a real full disk (a 1 MiB tmpfs, root only).
//   - TestCrashExt4PowerLoss: power loss through the kernel (root only):
//     ext4 on a loop device, shut down mid-save with EXT4_IOC_SHUTDOWN
//     (NOLOGFLUSH: the running journal transaction is dropped) under a
//     child saving the workloads of internal/powerload, then unmounted and
//     mounted again; nothing acknowledged before the cut is lost (I1),
//     exactly one step's snapshot is recovered, value by value (I2), no
//     half transfer (I3), every retained snapshot likewise; Maps key by
//     key.
//     INSTADUMP_EXT4_ROUNDS sets the rounds (40).
//   - TestRegress*: engine bugs the crash model found, as the crash that
//     showed each; and the space a Map's chain pinned past a compaction
//     (I6), as the saves that showed it.
//
// The module in fuzz/powercut (its own go.mod, for go-fuse) runs the same
// workloads and checks on a FUSE filesystem that loses at a power cut all
// that POSIX allows, unsynced names and data alike:
//
//	cd fuzz/powercut && go test .   # INSTADUMP_FUSE_ROUNDS sets the rounds (40)
//
// `go test ./fuzz -run Crash -v` ends with the figures of the MemFS tests;
// the ext4 and FUSE tests print theirs on a line of their own.
package fuzz
