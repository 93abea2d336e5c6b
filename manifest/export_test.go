package manifest

import "github.com/cespare/xxhash/v2"

func xxhashSumString(s string) uint64 { return xxhash.Sum64String(s) }
