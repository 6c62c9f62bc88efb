package tlsconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
)

// Why a server handshake failed: the values of the reason label of
// tracehop_tls_handshake_failures_total. A short, fixed set, so that the
// metric's series stay few whatever clients do.
const (
	ReasonPlaintext       = "plaintext"               // an HTTP request on the TLS port
	ReasonNotTLS          = "not_tls"                 // other bytes that are not TLS
	ReasonTimeout         = "timeout"                 // the client stalled past handshake_timeout
	ReasonClosed          = "closed"                  // the client went away mid-handshake (or a TCP health check)
	ReasonNoClientCert    = "no_client_cert"          // client_auth: require, and none sent
	ReasonUnknownCA       = "unknown_ca"              // a client certificate from another CA
	ReasonBadClientCert   = "bad_client_cert"         // expired, wrong usage, ...
	ReasonProtocolVersion = "protocol_version"        // below min_version
	ReasonNoALPN          = "no_application_protocol" // no protocol in common
	ReasonRejected        = "certificate_rejected"    // the client refused tracehop's certificate (wrong SNI, unknown CA)
	ReasonOther           = "other"
)

// Classify names why a server handshake failed.
func Classify(err error) string {
	var rhe tls.RecordHeaderError
	var cve *tls.CertificateVerificationError
	var op *net.OpError
	switch {
	case errors.As(err, &rhe):
		if LooksLikeHTTP(rhe.RecordHeader[:]) {
			return ReasonPlaintext
		}
		return ReasonNotTLS
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ReasonTimeout
	case errors.As(err, &cve):
		var ua x509.UnknownAuthorityError
		if errors.As(cve.Err, &ua) {
			return ReasonUnknownCA
		}
		return ReasonBadClientCert
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		return ReasonClosed
	case errors.As(err, &op) && op.Op == "remote error":
		// An alert from the client: it refused something of tracehop's.
		msg := op.Err.Error()
		switch {
		case strings.Contains(msg, "protocol version"):
			return ReasonProtocolVersion
		case strings.Contains(msg, "no application protocol"):
			return ReasonNoALPN
		case strings.Contains(msg, "certificate"), strings.Contains(msg, "unrecognized name"):
			return ReasonRejected
		}
		return ReasonOther
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "didn't provide a certificate"):
		return ReasonNoClientCert
	case strings.Contains(msg, "unsupported versions"), strings.Contains(msg, "protocol version"):
		return ReasonProtocolVersion
	case strings.Contains(msg, "unsupported application protocols"):
		return ReasonNoALPN
	}
	return ReasonOther
}

// LooksLikeHTTP reports whether the first bytes of a connection are an
// HTTP/1 request line (as net/http's own check does).
func LooksLikeHTTP(hdr []byte) bool {
	for _, m := range []string{"GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE", "TRACE"} {
		if bytes.HasPrefix(hdr, []byte(m)) {
			return true
		}
	}
	return false
}

// PlaintextAnswer is written to a client that sent HTTP to a TLS port,
// before the connection closes: net/http's words.
const PlaintextAnswer = "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"

// VerifyReason describes why an upstream's certificate failed
// verification, or returns "" if err is not such a failure.
func VerifyReason(err error) string {
	var cve *tls.CertificateVerificationError
	if !errors.As(err, &cve) {
		var he x509.HostnameError
		var ua x509.UnknownAuthorityError
		var ci x509.CertificateInvalidError
		if !errors.As(err, &he) && !errors.As(err, &ua) && !errors.As(err, &ci) {
			return ""
		}
		return strings.TrimPrefix(err.Error(), "tls: ")
	}
	return strings.TrimPrefix(cve.Err.Error(), "x509: ")
}
