package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tracehop/tracehop/proxy/internal/h1"
	"github.com/tracehop/tracehop/proxy/internal/upstream"
)

// readResponseHead waits for the upstream's response head, at most timeout
// (a negative timeout leaves the connection's deadline as it is).
func (fc *fastConn) readResponseHead(uc *upstream.Conn, timeout time.Duration) error {
	if timeout > 0 {
		uc.ReadDeadline.Set(uc.NetConn, timeout)
	} else if timeout == 0 {
		uc.ReadDeadline.Clear(uc.NetConn)
	}
	for {
		buf, err := uc.Reader.Peek(1)
		if err != nil {
			return err
		}
		uc.Answered = true
		buf, _ = uc.Reader.Peek(uc.Reader.Buffered())
		if n := h1.HeadLen(buf); n >= 0 {
			// The deadline stays: relay clears it before it reads a body
			// from the network. An answer already in the buffer (most)
			// costs no timer update.
			fc.respHeadLen = n
			return nil
		}
		if len(buf) == uc.Reader.Size() {
			return fmt.Errorf("the upstream's response head is larger than %d KiB", uc.Reader.Size()>>10)
		}
		if _, err := uc.Reader.Peek(len(buf) + 1); err != nil {
			return err
		}
	}
}

type bodyKind int

const (
	bodyNone bodyKind = iota
	bodyLength
	bodyChunked
	bodyUntilClose
)

// max1xx bounds the informational responses relayed for one request, as
// net/http's Transport does.
const max1xx = 5

// relay writes the response to the client. up is the upload of a streamed
// request body, or nil.
func (fc *fastConn) relay(uc *upstream.Conn, st *reqState, v *reqView, up *upload) outcome {
	if out, ok := fc.skipInformational(uc, st, v); !ok {
		return out
	}
	w, f, out, ok := fc.responseHead(uc, st, v, up)
	if !ok {
		return out
	}
	return fc.relayBody(uc, st, v, up, w, f, out)
}

// skipInformational relays the informational answers (103 Early Hints)
// before the final one, whose head is then in fc.respHeadLen; false: the
// exchange failed, and the outcome is what the request came to.
func (fc *fastConn) skipInformational(uc *upstream.Conn, st *reqState, v *reqView) (outcome, bool) {
	for n1xx := 0; ; n1xx++ {
		buf, _ := uc.Reader.Peek(fc.respHeadLen)
		if err := h1.ParseResponse(buf, &fc.resp); err != nil {
			uc.Close()
			return fc.fail(st, v, errors.New("the upstream sent a malformed response head"), closeLinger), false
		}
		s := fc.resp.Status
		if s < 100 || s >= 200 || s == 101 {
			return 0, true
		}
		// Informational (103 Early Hints): pass it on, written again
		// without hop-by-hop or framing fields, and read on.
		if n1xx == max1xx {
			uc.Close()
			return fc.fail(st, v, errors.New("the upstream sent too many 1xx responses"), closeLinger), false
		}
		w := fc.appendStatusLine(fc.out[:0])
		for _, h := range fc.resp.Headers {
			if !hopResponseHeader(h.Name) && !h1.EqualFold(h.Name, "Content-Length") && !h1.EqualFold(h.Name, "Transfer-Encoding") {
				w = appendHeader(w, h.Name, h.Value)
			}
		}
		w = append(w, "\r\n"...)
		fc.out = w[:0]
		if err := fc.write(w); err != nil {
			uc.Close()
			return fc.abort(st, v, "DC"), false
		}
		uc.Reader.Discard(fc.respHeadLen)
		if err := fc.readResponseHead(uc, st.route.timeout); err != nil {
			uc.Close()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = errUpstreamTimeout
			}
			return fc.fail(st, v, err, closeLinger), false
		}
	}
}

// framing is how a response's body is delimited, as the upstream sent it.
type framing struct {
	kind          bodyKind
	length        int64
	upstreamClose bool // the upstream connection ends with this response
}

// responseHead writes the final response's head for the client into w,
// without hop-by-hop and framing fields, and says how its body is framed
// and what the client connection does after it; false: the head was
// malformed, and the outcome is the 502 answered.
func (fc *fastConn) responseHead(uc *upstream.Conn, st *reqState, v *reqView, up *upload) ([]byte, framing, outcome, bool) {
	resp := &fc.resp
	if resp.Status == 101 {
		uc.Close()
		return nil, framing{}, fc.fail(st, v, errors.New("the upstream switched protocols unasked"), closeLinger), false
	}
	kind, length := bodyUntilClose, int64(-1)
	upstreamClose := resp.Minor == 0
	// RFC 9110 §7.6.1: every field Connection names goes, wherever it
	// stands, so the options are read first.
	connOptions := false
	for _, h := range resp.Headers {
		if h1.EqualFold(h.Name, "Connection") {
			for tok := range strings.SplitSeq(str(h.Value), ",") {
				switch tok = strings.TrimSpace(tok); {
				case strings.EqualFold(tok, "close"):
					upstreamClose = true
				case tok != "" && !strings.EqualFold(tok, "keep-alive"):
					connOptions = true
				}
			}
		}
	}
	w := fc.appendStatusLine(fc.out[:0])
	for _, h := range resp.Headers {
		switch {
		case h1.EqualFold(h.Name, "Content-Length"):
			// Written again below, once and canonically, where it may be.
			n, ok := h1.ParseLength(h.Value)
			if !ok || length >= 0 && n != length {
				uc.Close()
				return nil, framing{}, fc.fail(st, v, errors.New("the upstream sent an invalid Content-Length"), closeLinger), false
			}
			length = n
			continue
		case h1.EqualFold(h.Name, "Transfer-Encoding"):
			if !h1.EqualFold(h.Value, "chunked") || resp.Minor == 0 {
				// RFC 9112 §6.1: in HTTP/1.0, Transfer-Encoding means
				// faulty framing.
				uc.Close()
				return nil, framing{}, fc.fail(st, v, errors.New("the upstream sent a Transfer-Encoding other than chunked"), closeLinger), false
			}
			kind = bodyChunked
			continue
		case h1.EqualFold(h.Name, "Connection"), hopResponseHeader(h.Name):
			continue
		case connOptions && connectionNames(resp.Headers, h.Name):
			continue
		case h1.EqualFold(h.Name, "Grpc-Status"):
			v.grpcStatus = string(h.Value)
		case h1.EqualFold(h.Name, "Grpc-Message"):
			v.grpcMessage = string(h.Value)
		case fc.l.traceresponse && st.traced && h1.EqualFold(h.Name, "Traceresponse"):
			continue // tracehop's own goes instead
		}
		w = appendHeader(w, h.Name, h.Value)
	}
	w = fc.appendTraceresponse(w, &st.reqTrace)
	switch {
	case resp.Status == 204 || resp.Status == 304 || v.method == "HEAD":
		// No body. A 204 has no Content-Length (RFC 9110 §8.6); a 304 or
		// an answer to HEAD may say what the body would be.
		if length >= 0 && resp.Status != 204 && kind != bodyChunked {
			w = appendLength(w, length)
		}
		kind = bodyNone
		// A wrong upstream writes a body anyway, at once: the pool parks
		// the connection after a 204 or 304; after a HEAD (fewer, and
		// under load a parked connection was still measured to fall an
		// answer behind now and then) it is not reused at all.
		uc.Bodiless = true
		upstreamClose = upstreamClose || v.method == http.MethodHead
	case kind == bodyChunked:
		// RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, and
		// an intermediary removes the Content-Length before it forwards.
		// Such an answer may be an attack: the connection is not reused.
		w = append(w, "Transfer-Encoding: chunked\r\n"...)
		upstreamClose = upstreamClose || length >= 0
	case length >= 0:
		kind = bodyLength
		w = appendLength(w, length)
	}
	out := keepAlive
	if kind == bodyUntilClose {
		// Only the end of the connection ends the body.
		w = append(w, "Connection: close\r\n"...)
		out = closeConn
	} else if up != nil && up.running() {
		// The upstream answered before it had the whole body: the
		// client's connection cannot be reused (RFC 9112 §9.5).
		w = append(w, "Connection: close\r\n"...)
		out = closeLinger
	} else if fc.closeAfter || fc.closing.Load() {
		// The client asked to close, or tracehop is draining: say so
		// (RFC 9112 §9.6), as net/http does, so that a client does not
		// send its next request into a closing connection.
		w = append(w, "Connection: close\r\n"...)
		out = closeConn
	}
	w = append(w, "\r\n"...)
	if st.sampled && fc.l.tracer.wantsResponse(st.routeTracing) {
		// The head is gone once the body is read: keep what the span's
		// response-header tags read.
		fc.respCap.capture(resp.Headers, fc.l.tracer, st.routeTracing)
		v.respHeader = &fc.respCap
	}
	uc.Reader.Discard(fc.respHeadLen)
	v.status = resp.Status

	return w, framing{kind, length, upstreamClose}, out, true
}

// relayBody writes the response head w and the body framed as f to the
// client, and puts the upstream connection back when it can serve again.
func (fc *fastConn) relayBody(uc *upstream.Conn, st *reqState, v *reqView, up *upload, w []byte, f framing, out outcome) outcome {
	kind, length, upstreamClose := f.kind, f.length, f.upstreamClose
	var err error
	var sent int64
	var upErr bool
	switch kind {
	case bodyNone:
		err = fc.write(w)
	case bodyLength:
		if length <= inlineBody && int64(uc.Reader.Buffered()) >= length {
			body, _ := uc.Reader.Peek(int(length))
			w = append(w, body...)
			uc.Reader.Discard(int(length))
			err = fc.write(w)
			sent = length
		} else if err = fc.write(w); err == nil {
			uc.ReadDeadline.Clear(uc.NetConn)
			sent, err = h1.CopyN(fc.c, uc.Reader, length, nil)
			upErr = err != nil && sent < length && !isWriteErr(err)
		}
	case bodyChunked:
		if fc.bw == nil {
			fc.bw = bufio.NewWriterSize(fc.c, 8<<10)
		}
		fc.bw.Write(w)
		uc.ReadDeadline.Clear(uc.NetConn)
		sent, err = h1.CopyChunked(fc.bw, uc.Reader, fc.bw.Flush)
		upErr = err != nil && !isWriteErr(err)
		if err == nil {
			err = fc.bw.Flush()
		} else {
			fc.bw.Reset(fc.c)
		}
	case bodyUntilClose:
		if err = fc.write(w); err == nil {
			uc.ReadDeadline.Clear(uc.NetConn)
			sent, err = h1.CopyN(fc.c, uc.Reader, -1, nil)
			upErr = err != nil && !isWriteErr(err)
		}
		upstreamClose = true
	}
	fc.out = w[:0]
	v.respBytes = sent
	if err != nil {
		uc.Close()
		if upErr {
			return fc.abort(st, v, "UR")
		}
		return fc.abort(st, v, "DC")
	}
	if up != nil && (up.running() || !up.ok) {
		upstreamClose = true // the request never ended on it
	}
	if upstreamClose {
		uc.Close()
	} else {
		st.endpoint.Put(uc)
	}
	return out
}

// connectionNames says whether a Connection field of hs names name.
func connectionNames(hs []h1.Header, name []byte) bool {
	for _, h := range hs {
		if h1.EqualFold(h.Name, "Connection") {
			for tok := range strings.SplitSeq(str(h.Value), ",") {
				if h1.EqualFold(name, strings.TrimSpace(tok)) {
					return true
				}
			}
		}
	}
	return false
}

// appendStatusLine writes the status line of fc.resp as HTTP/1.1, with
// the standard reason phrase rather than the upstream's, as net/http's
// server does: a reason means nothing to a client (RFC 9110 §15), and a
// bare CR in one is a line end to some (a header injected).
func (fc *fastConn) appendStatusLine(w []byte) []byte {
	w = append(w, "HTTP/1.1 "...)
	w = strconv.AppendInt(w, int64(fc.resp.Status), 10)
	w = append(w, ' ')
	if text := http.StatusText(fc.resp.Status); text != "" {
		w = append(w, text...)
	} else {
		w = append(w, "status code "...)
		w = strconv.AppendInt(w, int64(fc.resp.Status), 10)
	}
	return append(w, "\r\n"...)
}

func appendHeader(w, name, value []byte) []byte {
	w = append(w, name...)
	w = append(w, ": "...)
	w = append(w, value...)
	return append(w, "\r\n"...)
}

// hopResponseHeader names the hop-by-hop response headers that are never
// relayed (Connection and Transfer-Encoding are handled apart).
func hopResponseHeader(name []byte) bool {
	return h1.EqualFold(name, "Keep-Alive") || h1.EqualFold(name, "Proxy-Connection") || h1.EqualFold(name, "Te") ||
		h1.EqualFold(name, "Upgrade") || h1.EqualFold(name, "Proxy-Authenticate")
}
