// Package noredirect owns how the gateway's outgoing HTTP clients treat redirects: they never
// follow one. A request to the upstream carries the token, a push to the CRM carries our signature
// and data; a redirect must not carry either anywhere else. The 3xx answer itself comes back to the
// caller, which treats it as the failure it is.
//
// It depends on nothing of the gateway, so every package that sends requests can use it.
package noredirect

import "net/http"

// Client returns a copy of base (an empty http.Client when nil) that never follows a redirect:
// the redirect answer is returned as the response. base itself is not changed.
func Client(base *http.Client) *http.Client {
	var hc http.Client
	if base != nil {
		hc = *base
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &hc
}
