package tlsconf

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Pair is a certificate and its key, read from two PEM files and read
// again when either changes. Certificate is safe for concurrent use and
// costs an atomic load, plus two stat calls at most once per CheckEvery.
type Pair struct {
	CertFile, KeyFile string

	log *slog.Logger
	cur atomic.Pointer[tls.Certificate]
	// nextCheck (Unix ns) is when the files may next be looked at.
	nextCheck atomic.Int64
	mu        sync.Mutex // one reload at a time
	stamp     fileStamp  // the files as last read (good or bad)
}

// CheckEvery is how often a Pair looks whether its files changed. A
// rotated certificate is in use at most this long after it is written.
var CheckEvery = time.Second

// fileStamp tells whether a file changed without reading it.
type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

func stampOf(certFile, keyFile string) (fileStamp, error) {
	ci, err := os.Stat(certFile)
	if err != nil {
		return fileStamp{}, err
	}
	ki, err := os.Stat(keyFile)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{ci.ModTime(), ki.ModTime(), ci.Size(), ki.Size()}, nil
}

// LoadPair reads a certificate and its key. log receives reloads (info)
// and rejected new pairs (warn); it may be nil.
func LoadPair(certFile, keyFile string, log *slog.Logger) (*Pair, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pair{CertFile: certFile, KeyFile: keyFile, log: log}
	st, err := stampOf(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	c, err := readPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	p.stamp = st
	p.cur.Store(c)
	p.nextCheck.Store(time.Now().Add(CheckEvery).UnixNano())
	return p, nil
}

func readPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The error names no key material: crypto/tls says what is wrong,
		// not what the key holds.
		return nil, fmt.Errorf("%s and %s: %w", certFile, keyFile, err)
	}
	return &c, nil
}

// Certificate returns the current pair, first reading the files again if
// they changed since the last look (and that look is CheckEvery old).
func (p *Pair) Certificate() *tls.Certificate {
	now := time.Now().UnixNano()
	if next := p.nextCheck.Load(); now >= next && p.nextCheck.CompareAndSwap(next, now+int64(CheckEvery)) {
		p.reload()
	}
	return p.cur.Load()
}

// reload reads the files if they changed. A pair that does not load (a
// rotation half done: the certificate written, the key not yet) is logged
// and the old one kept; the next change is tried again.
func (p *Pair) reload() {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := stampOf(p.CertFile, p.KeyFile)
	if err != nil {
		p.log.Warn("cannot look at the certificate files; keeping the current certificate", "cert_file", p.CertFile, "key_file", p.KeyFile, "error", err)
		return
	}
	if st == p.stamp {
		return
	}
	p.stamp = st
	c, err := readPair(p.CertFile, p.KeyFile)
	if err != nil {
		p.log.Warn("the changed certificate files do not load; keeping the current certificate", "cert_file", p.CertFile, "key_file", p.KeyFile, "error", err)
		return
	}
	p.cur.Store(c)
	p.log.Info("certificate reloaded", "cert_file", p.CertFile, "subject", c.Leaf.Subject.String(), "not_after", c.Leaf.NotAfter.UTC().Format(time.DateOnly))
}
