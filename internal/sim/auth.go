package sim

import (
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"
)

// user is the one account the simulator knows, built from Options.Identifier.
type user struct {
	ID         int    `json:"id"`
	Username   string `json:"username"`
	Email      string `json:"email"`
	FirstName  string `json:"firstName"`
	LastName   string `json:"lastName"`
	GlobalRole string `json:"globalRole"`
	Role       string `json:"role"`
	IsActive   bool   `json:"isActive"`
}

// simUserID is the database id of the simulated user, also the userId of its sessions.
const simUserID = 7

func newUser(identifier string) user {
	u := user{ID: simUserID, FirstName: "Sim", LastName: "Operator", GlobalRole: "user", Role: "admin", IsActive: true}
	if local, _, ok := strings.Cut(identifier, "@"); ok {
		u.Username, u.Email = local, identifier
	} else {
		u.Username, u.Email = identifier, identifier+"@sim.invalid"
	}
	return u
}

func (u user) subject() string { return strconv.Itoa(u.ID) }

// tokenPair is the token part of login and refresh answers.
type tokenPair struct {
	AccessToken  string `json:"accessToken"`
	RefreshToken string `json:"refreshToken,omitempty"`
	ExpiresIn    string `json:"expiresIn,omitempty"`
}

// login answers POST /api/auth/login. Identifier and password are compared in constant time.
func (s *Server) login(w http.ResponseWriter, r *http.Request) (reply, error) {
	rep, err := s.doLogin(w, r)
	s.counters.add(func(c *Counters) {
		if err != nil {
			c.LoginFailures++
		} else {
			c.Logins++
		}
	})
	return rep, err
}

func (s *Server) doLogin(w http.ResponseWriter, r *http.Request) (reply, error) {
	var req struct {
		Identifier string `json:"identifier"`
		Password   string `json:"password"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		return reply{}, err
	}
	if req.Identifier == "" || req.Password == "" {
		return reply{}, errValidation("identifier", "and password are required")
	}
	idOK := subtle.ConstantTimeCompare([]byte(req.Identifier), []byte(s.opts.Identifier))
	pwOK := subtle.ConstantTimeCompare([]byte(req.Password), []byte(s.opts.Password))
	if idOK&pwOK != 1 {
		return reply{}, &apiError{http.StatusUnauthorized, codeAuthFailed, "Credenciales inválidas", nil}
	}
	access, err := s.tokens.issue(kindAccess, s.user, s.opts.TokenLifetime)
	if err != nil {
		return reply{}, err
	}
	refresh, err := s.tokens.issue(kindRefresh, s.user, s.opts.RefreshLifetime)
	if err != nil {
		return reply{}, err
	}
	return reply{message: "Login exitoso", data: struct {
		User user `json:"user"`
		tokenPair
	}{s.user, tokenPair{access.raw, refresh.raw, FormatDuration(s.opts.TokenLifetime)}}}, nil
}

// refresh answers POST /api/auth/refresh-token. With RotateRefreshTokens the old refresh token
// dies and a new one is answered; with OmitRefreshFields only accessToken is answered.
func (s *Server) refresh(w http.ResponseWriter, r *http.Request) (reply, error) {
	rep, err := s.doRefresh(w, r)
	s.counters.add(func(c *Counters) {
		if err != nil {
			c.RefreshFailures++
		} else {
			c.Refreshes++
		}
	})
	return rep, err
}

func (s *Server) doRefresh(w http.ResponseWriter, r *http.Request) (reply, error) {
	var req struct {
		RefreshToken string `json:"refreshToken"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		return reply{}, err
	}
	if req.RefreshToken == "" {
		return reply{}, errValidation("refreshToken", "is required")
	}
	jti, err := s.tokens.validate(req.RefreshToken, kindRefresh)
	if err != nil {
		return reply{}, &apiError{http.StatusUnauthorized, codeInvalidToken, "Refresh token inválido o expirado", nil}
	}
	access, err := s.tokens.issue(kindAccess, s.user, s.opts.TokenLifetime)
	if err != nil {
		return reply{}, err
	}
	pair := tokenPair{AccessToken: access.raw, RefreshToken: req.RefreshToken, ExpiresIn: FormatDuration(s.opts.TokenLifetime)}
	if s.opts.RotateRefreshTokens {
		next, err := s.tokens.issue(kindRefresh, s.user, s.opts.RefreshLifetime)
		if err != nil {
			return reply{}, err
		}
		s.tokens.revoke(jti)
		pair.RefreshToken = next.raw
	}
	if s.opts.OmitRefreshFields {
		pair.RefreshToken, pair.ExpiresIn = "", ""
	}
	return reply{message: "Token renovado", data: pair}, nil
}

// profile answers GET /api/auth/profile with the user; the chain has checked the Bearer.
func (s *Server) profile(http.ResponseWriter, *http.Request) (reply, error) {
	return reply{data: map[string]user{"user": s.user}}, nil
}

// logout answers POST /api/auth/logout and invalidates the access token presented.
func (s *Server) logout(_ http.ResponseWriter, r *http.Request) (reply, error) {
	jti, e := s.bearer(r)
	if e != nil {
		return reply{}, e
	}
	s.tokens.revoke(jti)
	return reply{message: "Logout exitoso"}, nil
}
