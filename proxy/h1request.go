package proxy

import (
	"net/http"
	"strings"
	"time"

	"github.com/tracehop/tracehop/core/propagation"
	"github.com/tracehop/tracehop/proxy/config"
	"github.com/tracehop/tracehop/proxy/internal/h1"
)

func (fc *fastConn) serveRequest(headLen int) outcome {
	l := fc.l
	if headLen == headTimedOut {
		// As HAProxy does, and at once: handed to net/http, the client
		// would get read_header_timeout once more.
		return fc.refuse(http.StatusRequestTimeout, "the request head did not arrive within read_header_timeout")
	}
	if headLen < 0 {
		return fc.handOff()
	}
	buf, _ := fc.br.Peek(headLen)
	fc.head = append(fc.head[:0], buf...)
	if h1.ParseRequest(fc.head, &fc.req) != nil {
		return fc.handOff()
	}
	ri := fc.scanRequest()
	if ri.te && fc.req.Minor == 0 {
		return fc.refuse(http.StatusBadRequest, http10TERefusal)
	}
	if str(fc.req.Method) == http.MethodConnect {
		return fc.refuse(http.StatusMethodNotAllowed, connectRefusal)
	}
	if fc.req.Minor != 1 || l.slowPathOnly {
		return handOff
	}
	path, _, _ := strings.Cut(str(fc.req.Target), "?")
	if ri.unsupported || strings.IndexByte(path, '%') >= 0 {
		return handOff
	}
	var rt *route
	for _, r := range l.routes {
		if r.matchesFast(str(fc.req.Method), path, fc.req.Headers) {
			rt = r
			break
		}
	}
	if rt == nil || rt.cluster.HTTP2() || fc.buffersOnNetHTTP(rt, &ri) {
		return handOff
	}
	fc.br.Discard(headLen)
	start := time.Now()
	fc.closeAfter = ri.close || l.lastRequest(fc.life, fc.life.requests.Add(1), start) || fc.life.slot.given()

	st := &fc.st
	*st = reqState{frontend: l, reqTrace: reqTrace{
		ingress: l.ingress, trusted: l.trusted, baggageTrusted: l.baggageTrusted, start: start, peer: fc.peer, peerAddr: fc.peerAddr,
		buf: &fc.spanBuf, bagBuf: &fc.bagBuf, tls: fc.tls,
	}}
	st.setRoute(rt)
	st.requestID = fc.requestID(l, ri.requestID)
	st.reqBytes.Store(ri.length)
	fc.carrier.reset(fc.req.Headers)
	v := reqView{
		method: str(fc.req.Method), host: str(ri.host), uri: str(fc.req.Target), proto: "HTTP/1.1",
		userAgent: str(ri.userAgent), contentType: str(ri.contentType), header: &fc.carrier, volatile: true,
	}
	st.traced = st.traceOn(l)
	if st.traced {
		if fc.mut == nil {
			fc.mut = new(propagation.Mutations)
		}
		l.tracer.begin(&st.reqTrace, &v)
		l.tracer.prop.InjectInto(fc.mut, st.out)
	}
	var out outcome
	switch {
	case fc.req.Underscore && l.underscores == config.UnderscoresReject && fc.hasUnderscoreHeader():
		out = fc.answer(st, &v, http.StatusBadRequest, underscoreRefusal, "DPE", closeLinger)
	case rt.maxBody > 0 && ri.length > rt.maxBody:
		// Before any of it is read: the client may stop sending.
		out = fc.answer(st, &v, http.StatusRequestEntityTooLarge, bodyTooLarge(rt.maxBody), "", closeLinger)
	default:
		out = fc.proxy(st, &v, &ri)
	}
	l.done(st, &v)
	if out == keepAlive && (fc.closeAfter || fc.closing.Load()) {
		out = closeConn
	}
	return out
}

// buffersOnNetHTTP says whether the request's body is to be read whole
// before the upstream is dialed (buffer_request_body) and is larger than
// the connection's buffer, which already holds smaller ones whole: the
// net/http path buffers it.
func (fc *fastConn) buffersOnNetHTTP(rt *route, ri *reqInfo) bool {
	return rt.bufferBody > 0 && ri.length > int64(fc.br.Size()) && ri.length <= rt.bufferBody
}

// requestID returns the id of the request in hand: a trusted client's, or
// a new UUID. It lies in fc's memory, which the next request on the
// connection overwrites: what keeps it longer copies it (the link table).
func (fc *fastConn) requestID(l *frontend, id []byte) string {
	if l.trusted && validRequestID(str(id)) {
		if len(id) <= len(fc.reqID) {
			return str(fc.reqID[:copy(fc.reqID[:], id)])
		}
		fc.idBuf = append(fc.idBuf[:0], id...)
		return str(fc.idBuf)
	}
	putRequestID(&fc.reqID)
	return str(fc.reqID[:])
}
