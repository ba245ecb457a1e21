package queue

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The store keeps each message in two files in the queue directory:
// ID.eml, the bytes that leave, written once, and ID.json, the envelope
// and the delivery state, replaced whenever the state changes. Every
// file is written under a temporary name, synced, renamed into place,
// and the directory synced, so that a crash leaves either the old file
// or the new one, never a mix. ID.json is the commit point: a message
// exists when its .json does (see RATIONALE.md, "The queue's store").
const (
	dataExt  = ".eml"
	stateExt = ".json"
	tmpExt   = ".tmp"
	lockName = "lock"
	// corruptDir, in the queue directory, keeps the messages whose
	// state could not be read when the queue was opened.
	corruptDir = "corrupt"
)

// store is the queue directory.
type store struct {
	dir  string
	lock *os.File
}

// openStore locks dir (creating it) and removes what a crash left half
// written.
func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	// flock, not a lock file's existence: the kernel drops it when the
	// process dies, so a crash never leaves the queue locked.
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(lock.Name())
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("queue: %s is in use by another process (pid %s): one gateway per queue directory", dir, strings.TrimSpace(string(pid)))
		}
		return nil, fmt.Errorf("queue: locking %s: %w", dir, err)
	}
	if err := lock.Truncate(0); err == nil {
		lock.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &store{dir: dir, lock: lock}, nil
}

func (s *store) close() error {
	return s.lock.Close() // releases the flock
}

// load reads every committed message (without Data) and removes what
// is not one: temporary files of an interrupted write, and .eml files
// whose .json never got written (an Enqueue that did not return) or was
// removed (a delete that did not finish). A message whose .json cannot
// be read is moved to the corrupt directory and logged.
func (s *store) load(log *slog.Logger) ([]*Message, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Name()] = true
	}
	var msgs []*Message
	removed := false
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, tmpExt):
			os.Remove(filepath.Join(s.dir, name))
			removed = true
		case strings.HasSuffix(name, dataExt):
			if !have[strings.TrimSuffix(name, dataExt)+stateExt] {
				os.Remove(filepath.Join(s.dir, name))
				removed = true
			}
		case strings.HasSuffix(name, stateExt):
			id := strings.TrimSuffix(name, stateExt)
			if !have[id+dataExt] {
				// Renames reach the disk in any order before the
				// directory's sync, which Enqueue waits for: this
				// message was never acknowledged.
				os.Remove(filepath.Join(s.dir, name))
				removed = true
				continue
			}
			m, err := s.read(name)
			if err != nil {
				// One damaged file (a disk's fault, a hand's edit) must not
				// keep the gateway from starting, nor its message be
				// thrown away: it is set aside for the operator.
				if err := s.setAside(id); err != nil {
					return nil, err
				}
				log.Error("queue: a message's state cannot be read; its files are set aside, not delivered",
					"id", id, "error", err.Error(), "kept_in", filepath.Join(s.dir, corruptDir))
				removed = true
				continue
			}
			m.ID = id
			msgs = append(msgs, m)
		}
	}
	if removed {
		if err := syncDir(s.dir); err != nil {
			return nil, err
		}
	}
	return msgs, nil
}

// read reads and parses the state file name.
func (s *store) read(name string) (*Message, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		return nil, err
	}
	m := new(Message)
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

// setAside moves message id's files into the corrupt directory, where
// the queue never looks.
func (s *store) setAside(id string) error {
	dst := filepath.Join(s.dir, corruptDir)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	// The data first, and lasting before the state moves: a crash
	// between must not leave the data without its state in the queue
	// directory, where load would remove it.
	for _, name := range []string{id + dataExt, id + stateExt} {
		if err := os.Rename(filepath.Join(s.dir, name), filepath.Join(dst, name)); err != nil {
			return fmt.Errorf("queue: setting aside a damaged message: %w", err)
		}
		if err := syncDir(dst); err != nil {
			return err
		}
		if err := syncDir(s.dir); err != nil {
			return err
		}
	}
	return nil
}

// create stores a new message: its data, then its state.
func (s *store) create(m *Message) error {
	if err := s.writeFile(m.ID+dataExt, m.Data, false); err != nil {
		return err
	}
	if err := s.put(m); err != nil {
		// Not queued: the data would only take space until the next
		// start, on a disk that is likely full.
		os.Remove(filepath.Join(s.dir, m.ID+dataExt))
		return err
	}
	return nil
}

// put replaces m's state.
func (s *store) put(m *Message) error {
	st := *m
	st.Data = nil
	b, err := json.Marshal(&st)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	return s.writeFile(m.ID+stateExt, b, true)
}

// data reads m's bytes.
func (s *store) data(id string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, id+dataExt))
	if errors.Is(err, os.ErrNotExist) {
		// Removed since it was looked up (load sets aside a state
		// without its data, so nothing else leaves one): gone, as if
		// the lookup had come a moment later.
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	return b, nil
}

// remove deletes a message: the state first (the commit point), then
// the data, which load removes if a crash comes between.
func (s *store) remove(id string) error {
	if err := os.Remove(filepath.Join(s.dir, id+stateExt)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("queue: %w", err)
	}
	if err := os.Remove(filepath.Join(s.dir, id+dataExt)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("queue: %w", err)
	}
	return syncDir(s.dir)
}

// writeFile writes name atomically: temporary file, sync, rename, and,
// when syncdir, a sync of the directory so that the rename lasts.
func (s *store) writeFile(name string, b []byte, syncdir bool) error {
	tmp := filepath.Join(s.dir, name+"."+randomHex(4)+tmpExt)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("queue: %w", err)
	}
	if syncdir {
		return syncDir(s.dir)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("queue: syncing %s: %w", dir, err)
	}
	return nil
}

// newID names a message: its time (so that names sort by arrival) and
// random bits, hex only, so it is a safe file name.
func newID(now time.Time) string {
	return strconv.FormatInt(now.UnixMicro(), 16) + randomHex(5)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// size is the size of id's data, for List; 0 if unknown.
func (s *store) size(id string) int {
	fi, err := os.Stat(filepath.Join(s.dir, id+dataExt))
	if err != nil {
		return 0
	}
	return int(fi.Size())
}
