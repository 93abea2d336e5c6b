package vfs

// NameLog is the crash model's rule for names: a filesystem's name
// operations (create, mkdir, rename, remove) not yet durable, oldest
// first, which of them a sync of a directory makes durable, and which a
// crash may keep. N is a node (a file or a directory) of the
// filesystem; its zero value is no node. MemFS keeps one, and so does
// the power-cut FUSE filesystem of the fuzz tests.
type NameLog[N comparable] []NameOp[N]

// NameOp is one name operation: its changes to directories, applied
// together or not at all.
type NameOp[N comparable] struct {
	What    string
	Effects []NameEffect[N]
}

// NameEffect sets Name in directory Dir to node To, or with To zero
// removes it if it still names node Was.
type NameEffect[N comparable] struct {
	Dir     N
	Name    string
	To, Was N
}

// Apply applies e to names, the names of e.Dir.
func (e NameEffect[N]) Apply(names map[string]N) {
	var none N
	switch {
	case e.To != none:
		names[e.Name] = e.To
	case names[e.Name] == e.Was:
		delete(names, e.Name)
	}
}

// nameKey is one name in one directory.
type nameKey[N comparable] struct {
	dir  N
	name string
}

func (e NameEffect[N]) key() nameKey[N] { return nameKey[N]{e.Dir, e.Name} }

// Add logs an operation.
func (l *NameLog[N]) Add(what string, effects ...NameEffect[N]) {
	*l = append(*l, NameOp[N]{What: what, Effects: effects})
}

// Whats describes the operations, oldest first.
func (l NameLog[N]) Whats() []string {
	out := make([]string, len(l))
	for i, op := range l {
		out[i] = op.What
	}
	return out
}

// Sync splits the log at a sync of directory dir: durable, in order, the
// operations it makes durable, which are every one in dir and every
// earlier one on a name that those touch (and so on back), so that the
// durable operations on each name are always a prefix of the operations
// made on it; rest, the log after it.
func (l NameLog[N]) Sync(dir N) (durable []NameOp[N], rest NameLog[N]) {
	need := map[nameKey[N]]bool{} // names whose earlier operations must be durable
	now := make([]bool, len(l))
	for i := len(l) - 1; i >= 0; i-- {
		for _, e := range l[i].Effects {
			if e.Dir == dir || need[e.key()] {
				now[i] = true
			}
		}
		if now[i] {
			for _, e := range l[i].Effects {
				need[e.key()] = true
			}
		}
	}
	for i, op := range l {
		if now[i] {
			durable = append(durable, op)
		} else {
			rest = append(rest, op)
		}
	}
	return durable, rest
}

// Survivors returns, in order, the operations a crash keeps: keep draws,
// for each operation in turn, whether it survives, and an operation
// survives only with the earlier ones on the same names, so that a
// rename never leaves its node under both names or none.
func (l NameLog[N]) Survivors(keep func() bool) []NameOp[N] {
	var out []NameOp[N]
	last := map[nameKey[N]]bool{} // did the latest operation on the name survive?
	for _, op := range l {
		kept := keep()
		for _, e := range op.Effects {
			if k, ok := last[e.key()]; ok && !k {
				kept = false
			}
		}
		for _, e := range op.Effects {
			last[e.key()] = kept
		}
		if kept {
			out = append(out, op)
		}
	}
	return out
}
