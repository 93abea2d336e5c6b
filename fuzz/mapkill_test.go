package fuzz

import (
	"fmt"
	"maps"
	"math/rand"
	"slices"

	"github.com/instadump/instadump"
)

// The kill -9 child also keeps a Map of accounts: each of its
// transactions moves an amount between two of them (creating the one it
// pays into, deleting the one it empties), chosen from the transaction's
// number (the counter) and the balances, so that the parent knows the
// Map after any acknowledged round key by key.

const (
	killMapName  = "accounts"
	killMapKeys  = 64
	killMapTotal = 100_000
)

// killMapTransfer returns transaction c's writes to the Map of accounts
// holding bal: each key's new balance, 0 for a key it deletes. The first
// transaction funds the first account.
func killMapTransfer(c int, bal map[string]int) map[string]int {
	if c == 1 {
		return map[string]int{"m00": killMapTotal}
	}
	rng := rand.New(rand.NewSource(int64(c)))
	keys := slices.Sorted(maps.Keys(bal))
	if len(keys) == 0 {
		return nil
	}
	from := keys[rng.Intn(len(keys))]
	to := fmt.Sprintf("m%02d", rng.Intn(killMapKeys))
	if from == to {
		return nil
	}
	amount := bal[from]
	if rng.Intn(4) > 0 { // mostly part of it, sometimes all: the account goes
		amount = rng.Intn(bal[from] + 1)
	}
	return map[string]int{from: bal[from] - amount, to: bal[to] + amount}
}

// killMapSetIn applies transaction c to the Map in tx.
func killMapSetIn(tx *instadump.Tx, m *instadump.Map[string, int], c int) {
	bal := map[string]int{}
	for k, v := range m.All() { // the committed balances: the only writes are these
		bal[k] = v
	}
	for k, v := range killMapTransfer(c, bal) {
		if v == 0 {
			m.DeleteIn(tx, k)
		} else {
			m.SetIn(tx, k, v)
		}
	}
}

// killMapModel is the Map after transaction c, kept from one round to
// the next (recovery only moves forward).
var killMapModel struct {
	c   int
	bal map[string]int
}

func killMapAt(c int) map[string]int {
	if killMapModel.bal == nil || c < killMapModel.c {
		killMapModel.c, killMapModel.bal = 0, map[string]int{}
	}
	for killMapModel.c < c {
		killMapModel.c++
		for k, v := range killMapTransfer(killMapModel.c, killMapModel.bal) {
			if v == 0 {
				delete(killMapModel.bal, k)
			} else {
				killMapModel.bal[k] = v
			}
		}
	}
	return killMapModel.bal
}

// checkKillMap checks the recovered Map against the one after
// transaction counter, key by key, and its total.
func checkKillMap(m *instadump.Map[string, int], counter int) error {
	got := map[string]int{}
	sum := 0
	for k, v := range m.All() {
		got[k] = v
		sum += v
	}
	if counter > 0 && sum != killMapTotal {
		return fmt.Errorf("the Map's accounts hold %d, want %d: half a transaction was recovered", sum, killMapTotal)
	}
	want := killMapAt(counter)
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			return fmt.Errorf("after transaction %d, %s[%s] = %d, want %d", counter, killMapName, k, got[k], want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			return fmt.Errorf("after transaction %d, %s[%s] = %d, want no such key", counter, killMapName, k, got[k])
		}
	}
	if m.Len() != len(want) {
		return fmt.Errorf("after transaction %d, %s has Len %d, want %d", counter, killMapName, m.Len(), len(want))
	}
	mapFigures.killKeys.Add(int64(len(want)))
	return nil
}
