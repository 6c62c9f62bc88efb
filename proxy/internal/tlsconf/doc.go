// Package tlsconf is tracehop's TLS material and the decisions made about
// it: certificate pairs read from files and read again when the files
// change (cert-manager and the like rotate them in place), the listener's
// tls.Config (a certificate chosen by SNI, client certificates verified
// for mutual TLS, ALPN), a cluster's client tls.Config (verification on by
// default, session resumption, a client certificate), why a handshake
// failed (a short reason for a metric label), and who a verified client
// certificate names (a span tag, Envoy's x-forwarded-client-cert).
//
// It is split out of the proxy because it is a concept of its own that a
// newcomer would look for by name, and because none of it is HTTP: the
// proxy wraps connections with what this package configures and does not
// need to know how certificates are found, reloaded or classified. It does
// not accept connections, read requests or count anything itself.
package tlsconf
