package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/tracehop/tracehop/proxy/internal/deadline"
	"github.com/tracehop/tracehop/proxy/internal/h1"
	"github.com/tracehop/tracehop/proxy/internal/upstream"
)

// upload is a request body on its way upstream beside the response.
type upload struct {
	done     chan error
	mu       sync.Mutex
	headSeen bool // the response head is here: the upload no longer sets deadlines on the upstream's reads
	finished bool
	ok       bool // the whole body went upstream
	err      error
}

func (up *upload) run(fc *fastConn, uc *upstream.Conn, n int64, timeout time.Duration) {
	err := copyBody(uc.NetConn, fc.br, fc.c, n, fc.l.bodyTimeout, timeout)
	up.mu.Lock()
	if !up.headSeen {
		switch {
		case err == nil && timeout > 0:
			// The route timeout counts from the end of the request.
			uc.NetConn.SetReadDeadline(time.Now().Add(timeout))
		case err == nil:
		case isWriteErr(err):
			// The upstream stopped reading: its early answer may still
			// be on the way.
			uc.NetConn.SetReadDeadline(time.Now().Add(earlyAnswerGrace))
		default:
			// The client failed: stop waiting for the upstream.
			uc.NetConn.SetReadDeadline(time.Now())
		}
	}
	up.mu.Unlock()
	up.done <- err
}

// earlyAnswerGrace is how long an upstream that stopped reading a body has
// to send its answer.
const earlyAnswerGrace = time.Second

// errUploadStopped is the error of an upload that tracehop cut short.
var errUploadStopped = errors.New("the request body's upload was stopped")

// stop ends the upload if it still runs (the response is complete, or the
// upstream failed) and returns its error: errUploadStopped if it had to be
// cut. The client's connection may then hold body bytes nobody read.
func (up *upload) stop(fc *fastConn, uc *upstream.Conn) error {
	if up.finished {
		return up.err
	}
	select {
	case up.err = <-up.done:
	default:
		fc.c.SetReadDeadline(time.Now())
		uc.NetConn.SetWriteDeadline(time.Now())
		if err := <-up.done; err != nil {
			up.err = errUploadStopped
		}
	}
	up.finished, up.ok = true, up.err == nil
	return up.err
}

// running reports whether the upload goes on, without waiting.
func (up *upload) running() bool {
	if up.finished {
		return false
	}
	select {
	case up.err = <-up.done:
		up.finished, up.ok = true, up.err == nil
		return false
	default:
		return true
	}
}

// copyBody copies n bytes of a request body from the client (src, read
// through br) to the upstream (dst). Each wait for the client is bounded by
// readTimeout, each write to the upstream by writeTimeout. Failures to
// write are h1.WriteErrors; anything else is the client's.
func copyBody(dst net.Conn, br *bufio.Reader, src net.Conn, n int64, readTimeout, writeTimeout time.Duration) error {
	var rd deadline.Read
	for done := int64(0); done < n; {
		if br.Buffered() == 0 {
			if readTimeout > 0 {
				rd.Set(src, readTimeout)
			}
			if _, err := br.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		b, _ := br.Peek(int(min(int64(br.Buffered()), n-done)))
		if writeTimeout > 0 {
			dst.SetWriteDeadline(time.Now().Add(writeTimeout))
		}
		m, err := dst.Write(b)
		br.Discard(m)
		done += int64(m)
		if err != nil {
			return h1.WriteError{Err: err}
		}
	}
	if writeTimeout > 0 {
		dst.SetWriteDeadline(time.Time{})
	}
	return nil
}
