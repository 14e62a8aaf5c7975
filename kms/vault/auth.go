package vault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"
)

// maxCredentialFile bounds a role id or secret id file.
const maxCredentialFile = 4096

// revokeTimeout bounds the revocation of the KEK's token in Close.
const revokeTimeout = 5 * time.Second

// An authError is AppRole credentials that could not be read (it names
// the file, never its contents) or that Vault refused (AppRole answers 400,
// not 403, to a wrong role id or secret id).
type authError struct{ err error }

func (e *authError) Error() string { return "vault: login: " + e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

// authenticator holds the KEK's token: it sets it, or logs in with
// AppRole, then renews it and logs in again in the background.
type authenticator struct {
	client  *api.Client
	approle *AppRole
	method  api.AuthMethod
	token   string
	logger  *slog.Logger

	ctx    context.Context // ends when the KEK is closed
	cancel context.CancelFunc
	done   chan struct{} // closed when the renewal loop has returned

	logins   atomic.Int64
	renewals atomic.Int64
}

// start authenticates the client and returns the token's lease to renew,
// or nil when there is nothing to renew.
func (a *authenticator) start(ctx context.Context) (*api.Secret, error) {
	if a.logsIn() {
		return a.login(ctx)
	}
	a.client.SetToken(a.token)
	// Only a renewable token with a TTL is renewed. A token that may not
	// look itself up (no default policy) can still use transit, so a
	// failed lookup only disables renewal.
	s, err := a.client.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		a.logger.LogAttrs(ctx, slog.LevelInfo, "vault: token lookup failed, the token will not be renewed",
			slog.String("error", toServerError(err).Error()))
		return nil, nil
	}
	renewable, _ := s.TokenIsRenewable()
	ttl, _ := s.TokenTTL()
	if !renewable || ttl <= 0 {
		return nil, nil
	}
	return &api.Secret{Auth: &api.SecretAuth{ClientToken: a.token, Renewable: true, LeaseDuration: int(ttl / time.Second)}}, nil
}

// logsIn reports whether the token comes from a login (AppRole or an
// AuthMethod) rather than being given.
func (a *authenticator) logsIn() bool { return a.approle != nil || a.method != nil }

// login logs in with the AuthMethod, or with AppRole reading the
// credentials anew, and sets the client's token.
func (a *authenticator) login(ctx context.Context) (*api.Secret, error) {
	if a.method != nil {
		s, err := a.client.Auth().Login(ctx, a.method)
		if err != nil {
			var re *api.ResponseError
			if errors.As(err, &re) && re.StatusCode == http.StatusBadRequest {
				return nil, &authError{toServerError(err)}
			}
			return nil, err
		}
		if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
			return nil, &ServerError{Path: "login", StatusCode: 200, Messages: []string{"login returned no token"}}
		}
		a.client.SetToken(s.Auth.ClientToken)
		a.logins.Add(1)
		a.logger.LogAttrs(ctx, slog.LevelInfo, "vault: logged in",
			slog.String("method", fmt.Sprintf("%T", a.method)),
			slog.Duration("ttl", time.Duration(s.Auth.LeaseDuration)*time.Second), slog.Bool("renewable", s.Auth.Renewable))
		return s, nil
	}
	roleID, err := readCredential(a.approle.RoleID, a.approle.RoleIDFile)
	if err != nil {
		return nil, err
	}
	secretID, err := readCredential(a.approle.SecretID, a.approle.SecretIDFile)
	if err != nil {
		return nil, err
	}
	data := map[string]any{"role_id": roleID}
	if secretID != "" {
		data["secret_id"] = secretID
	}
	mount := strings.Trim(a.approle.Mount, "/")
	if mount == "" {
		mount = DefaultAppRoleMount
	}
	s, err := a.client.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", data)
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusBadRequest {
			return nil, &authError{toServerError(err)}
		}
		return nil, err
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return nil, &ServerError{Path: "auth/" + mount + "/login", StatusCode: 200, Messages: []string{"login returned no token"}}
	}
	a.client.SetToken(s.Auth.ClientToken)
	a.logins.Add(1)
	a.logger.LogAttrs(ctx, slog.LevelInfo, "vault: logged in with AppRole",
		slog.Duration("ttl", time.Duration(s.Auth.LeaseDuration)*time.Second), slog.Bool("renewable", s.Auth.Renewable))
	return s, nil
}

// readCredential returns value, or the trimmed contents of file.
func readCredential(value, file string) (string, error) {
	if file == "" {
		return value, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return "", &authError{err}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCredentialFile+1))
	if err != nil {
		return "", &authError{err}
	}
	if len(b) > maxCredentialFile {
		return "", &authError{fmt.Errorf("%s is larger than %d bytes", file, maxCredentialFile)}
	}
	v := strings.TrimSpace(string(b))
	clear(b)
	if v == "" {
		return "", &authError{fmt.Errorf("%s is empty", file)}
	}
	return v, nil
}

// run starts the renewal loop for secret (nil: nothing to renew).
func (a *authenticator) run(secret *api.Secret) {
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.done = make(chan struct{})
	if secret == nil {
		close(a.done)
		return
	}
	go a.loop(secret)
}

// loop renews the token until it can no longer be renewed, then logs in
// again (AppRole) or gives up (a given token), until the KEK is closed.
func (a *authenticator) loop(secret *api.Secret) {
	defer close(a.done)
	for {
		a.watch(secret)
		if a.ctx.Err() != nil {
			return
		}
		if !a.logsIn() {
			a.logger.LogAttrs(a.ctx, slog.LevelWarn,
				"vault: the token can no longer be renewed; calls will fail with permission denied once it expires")
			return
		}
		if secret = a.relogin(); secret == nil {
			return
		}
	}
}

// watch renews secret's token with a LifetimeWatcher until the watcher
// stops (the token nears its maximum TTL, or renewal kept failing) or the
// KEK is closed.
func (a *authenticator) watch(secret *api.Secret) {
	w, err := a.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: secret})
	if err != nil {
		a.logger.LogAttrs(a.ctx, slog.LevelError, "vault: cannot renew the token", slog.String("error", err.Error()))
		return
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case err := <-w.DoneCh():
			if err != nil {
				a.logger.LogAttrs(a.ctx, slog.LevelWarn, "vault: token renewal stopped", slog.String("error", toServerError(err).Error()))
			}
			return
		case r := <-w.RenewCh():
			a.renewals.Add(1)
			var ttl time.Duration
			if r.Secret != nil && r.Secret.Auth != nil {
				ttl = time.Duration(r.Secret.Auth.LeaseDuration) * time.Second
			}
			a.logger.LogAttrs(a.ctx, slog.LevelDebug, "vault: token renewed", slog.Duration("ttl", ttl))
		}
	}
}

// relogin logs in again, retrying with capped exponential backoff and
// jitter, until it succeeds (it returns the new lease) or the KEK is closed
// (it returns nil).
func (a *authenticator) relogin() *api.Secret {
	delay := time.Second
	for {
		ctx, cancel := context.WithTimeout(a.ctx, time.Minute)
		s, err := a.login(ctx)
		cancel()
		if err == nil {
			return s
		}
		if a.ctx.Err() != nil {
			return nil
		}
		a.logger.LogAttrs(a.ctx, slog.LevelWarn, "vault: login failed, will retry",
			slog.String("error", toServerError(err).Error()), slog.Duration("retry_in", delay))
		t := time.NewTimer(delay/2 + rand.N(delay/2+1))
		select {
		case <-a.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(2*delay, time.Minute)
	}
}

// close stops the renewal loop and revokes a token obtained by login.
func (a *authenticator) close() error {
	if a.cancel != nil {
		a.cancel()
		<-a.done
	}
	if !a.logsIn() || a.client.Token() == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
	defer cancel()
	err := a.client.Auth().Token().RevokeSelfWithContext(ctx, "")
	a.client.ClearToken()
	if err != nil {
		return fmt.Errorf("vault: revoking the KEK's token: %w", toServerError(err))
	}
	return nil
}
