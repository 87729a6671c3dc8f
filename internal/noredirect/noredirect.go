// Package noredirect owns how the gateway's outgoing HTTP clients are made (upstream, CRM sink,
// CRM events): they never follow a redirect, and they send the request's trace context and
// request id on (package telemetry's transport). A request to the upstream carries the token, a
// push to the CRM carries our signature and data; a redirect must not carry either anywhere else.
// The 3xx answer itself comes back to the caller, which treats it as the failure it is.
//
// It depends only on package telemetry, so every package that sends requests can use it.
package noredirect

import (
	"net/http"

	"github.com/inboxhub-gateway/gateway/internal/telemetry"
)

// Client returns a copy of base (an empty http.Client when nil) that never follows a redirect
// (the redirect answer is returned as the response) and whose transport sends the trace context
// and request id of each request's context on. base itself is not changed.
func Client(base *http.Client) *http.Client {
	var hc http.Client
	if base != nil {
		hc = *base
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	hc.Transport = telemetry.Transport(hc.Transport)
	return &hc
}
