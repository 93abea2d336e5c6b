package instadump

import (
	"sync"
	"time"
)

// autoSaver saves a DB in the background every interval, when something
// changed (WithAutoSave).
type autoSaver struct {
	quit chan struct{}
	done chan struct{}
	once sync.Once
	mu   sync.Mutex
	err  error // of the last automatic save
}

func startAutoSave(db *DB, every time.Duration) *autoSaver {
	a := &autoSaver{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-a.quit:
				return
			case <-t.C:
			}
			if !db.needsSave() {
				continue
			}
			db.saveMu.Lock()
			var err error
			if !db.closed.Load() {
				_, err = db.save()
			}
			db.saveMu.Unlock()
			a.mu.Lock()
			a.err = err
			a.mu.Unlock()
			if err != nil {
				db.log.Error("instadump: automatic save failed", "dir", db.Dir(), "err", err)
			}
		}
	}()
	return a
}

// stop ends the saver and waits for a save in progress.
func (a *autoSaver) stop() {
	a.once.Do(func() { close(a.quit) })
	<-a.done
}

// AutoSaveErr returns the error of the last automatic save (WithAutoSave),
// or nil if it succeeded or none ran.
func (db *DB) AutoSaveErr() error {
	if db.auto == nil {
		return nil
	}
	db.auto.mu.Lock()
	defer db.auto.mu.Unlock()
	return db.auto.err
}
