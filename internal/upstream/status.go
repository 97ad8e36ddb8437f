package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
)

// Reasons a call to Composio got no answer: a closed set, used as the
// reason label of composio_guard_upstream_errors_total and in logs.
const (
	ReasonClientGone   = "client_gone"
	ReasonTimeout      = "timeout"
	ReasonBodyTooLarge = "body_too_large"
	ReasonConnRefused  = "conn_refused"
	ReasonConnReset    = "conn_reset"
	ReasonDNS          = "dns"
	ReasonTLS          = "tls"
	ReasonEOF          = "eof"
	ReasonOther        = "other"
)

// StatusClientGone is logged and counted when the client went away before
// any answer; it is never written on the wire (nginx's convention).
const StatusClientGone = 499

// StatusFor is the one mapping from a failed call to Composio to the status
// the proxy answers and a reason from the closed set above. A nil error
// maps to (0, "").
func StatusFor(err error) (status int, reason string) {
	if err == nil {
		return 0, ""
	}
	// Order matters: a request body cut by http.MaxBytesReader or a cancelled
	// inbound request can also surface wrapped in network errors.
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, ReasonBodyTooLarge
	}
	if errors.Is(err, context.Canceled) {
		return StatusClientGone, ReasonClientGone
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusGatewayTimeout, ReasonTimeout
	}
	// Response-header, TLS-handshake and dial timeouts all say Timeout().
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return http.StatusGatewayTimeout, ReasonTimeout
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return http.StatusBadGateway, ReasonConnRefused
	// net.ErrClosed: the transport's write raced its own close of a
	// connection the upstream broke.
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, net.ErrClosed):
		return http.StatusBadGateway, ReasonConnReset
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return http.StatusBadGateway, ReasonDNS
	}
	if isTLSError(err) {
		return http.StatusBadGateway, ReasonTLS
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return http.StatusBadGateway, ReasonEOF
	}
	return http.StatusBadGateway, ReasonOther
}

func isTLSError(err error) bool {
	var (
		rh    tls.RecordHeaderError
		alert tls.AlertError
		cv    *tls.CertificateVerificationError
		ua    x509.UnknownAuthorityError
		hn    x509.HostnameError
		ci    x509.CertificateInvalidError
	)
	return errors.As(err, &rh) || errors.As(err, &alert) || errors.As(err, &cv) ||
		errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci)
}
