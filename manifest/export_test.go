package manifest

import "github.com/cespare/xxhash/v2"

func xxhashSum(b []byte) uint64       { return xxhash.Sum64(b) }
func xxhashSumString(s string) uint64 { return xxhash.Sum64String(s) }
