package keys

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// authRenewer logs in to Vault and keeps the token alive: a renewable token
// is renewed with renew-self by a lifetime watcher. When renewal fails or
// the token can be renewed no further, the renewer looks again, with
// backoff, until it has a token to renew: with AppRole the token in use if
// Vault still renews it, else a new login; with a token (token_env,
// token_file) the token read again, which is a new one when Vault Agent or
// an operator replaced it, or the same one once Vault answers again. A
// Vault that is down at renewal time is thus an outage only while it lasts.
// A call Vault refuses (ErrPermissionDenied) makes it look at once, paced
// (recheck), for a token Vault no longer knows: one revoked, its uses
// spent, or lost when Vault was restored from a snapshot.
// It owns one goroutine, stopped by stop.
type authRenewer struct {
	v    *Vault
	quit chan struct{}
	// refusals holds one signal that Vault refused a call with the token
	// in use; more while it is full are dropped (refused).
	refusals chan struct{}
	// expires is when the token in use expires as last renewed (run's
	// goroutine only).
	expires time.Time
	// nextCheck is the earliest time a refusal is acted on, checkWait the
	// wait after the next check (run's goroutine only).
	nextCheck time.Time
	checkWait time.Duration
	wg        sync.WaitGroup
	once      sync.Once
}

// startAuth logs in and starts renewal.
func startAuth(ctx context.Context, v *Vault) (*authRenewer, error) {
	a := &authRenewer{v: v, quit: make(chan struct{}), refusals: make(chan struct{}, 1)}
	secret, err := a.login(ctx)
	if err != nil {
		return nil, err
	}
	a.wg.Add(1)
	go a.run(secret)
	return a, nil
}

func (a *authRenewer) stop() {
	a.once.Do(func() { close(a.quit) })
	a.wg.Wait()
}

// refused tells the renewer that Vault refused a call with the token in
// use (ErrPermissionDenied). It never blocks: refusals made while one is
// waiting to be acted on are one.
func (a *authRenewer) refused() {
	if a == nil {
		return
	}
	select {
	case a.refusals <- struct{}{}:
	default:
	}
}

// login authenticates and returns a secret describing the token's lease.
func (a *authRenewer) login(ctx context.Context) (*vault.Secret, error) {
	cfg, c := a.v.cfg.Auth, a.v.client
	ctx, cancel := context.WithTimeout(ctx, a.v.cfg.Timeout)
	defer cancel()
	if ar := cfg.AppRole; ar != nil {
		roleID := ar.RoleID
		if ar.RoleIDFile != "" {
			var err error
			if roleID, err = readSecretFile(ar.RoleIDFile); err != nil {
				return nil, newError("approle login", nil, fmt.Errorf("vault.auth.approle.role_id_file: %w", err))
			}
		}
		secretID, err := readSecretFile(ar.SecretIDFile)
		if err != nil {
			return nil, newError("approle login", nil, fmt.Errorf("vault.auth.approle.secret_id_file: %w", err))
		}
		// The login goes through a copy of the client without its token,
		// so that the token in use stays until a new one is obtained.
		lc, err := a.loginClient()
		if err != nil {
			return nil, newError("approle login", nil, err)
		}
		s, err := lc.Logical().WriteWithContext(ctx, "auth/"+ar.Mount+"/login", map[string]any{"role_id": roleID, "secret_id": secretID})
		if err != nil {
			return nil, classify("approle login", err)
		}
		if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
			return nil, newError("approle login", nil, errors.New("vault returned no token"))
		}
		c.SetToken(s.Auth.ClientToken)
		return s, nil
	}
	var token string
	if cfg.TokenEnv != "" {
		token = strings.TrimSpace(os.Getenv(cfg.TokenEnv))
		if token == "" {
			return nil, newError("token login", nil, fmt.Errorf("environment variable %s is empty", cfg.TokenEnv))
		}
	} else {
		var err error
		if token, err = readSecretFile(cfg.TokenFile); err != nil {
			return nil, newError("token login", nil, fmt.Errorf("vault.auth.token_file: %w", err))
		}
	}
	// Looked up through a copy of the client: a token read again that does
	// not work does not replace the one in use.
	lc, err := a.loginClient()
	if err != nil {
		return nil, newError("token login", nil, err)
	}
	lc.SetToken(token)
	s, err := lc.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return nil, classify("token lookup-self", err)
	}
	c.SetToken(token)
	renewable, _ := s.TokenIsRenewable()
	ttl, _ := s.TokenTTL()
	// Vault gives the TTL in whole seconds: a token with under a second
	// left reads 0, as one that never expires does, which has no expiry
	// time. Given as 0 it would not be renewed again.
	lease := int(ttl / time.Second)
	if lease == 0 && s.Data["expire_time"] != nil {
		lease = 1
	}
	return &vault.Secret{Auth: &vault.SecretAuth{ClientToken: token, Renewable: renewable, LeaseDuration: lease}}, nil
}

// loginClient returns a copy of the client without its token, for the
// same Vault namespace (Clone copies no headers, which carry it) and with
// nothing taken from VAULT_* variables (Clone reads them again).
func (a *authRenewer) loginClient() (*vault.Client, error) {
	lc, err := a.v.client.Clone()
	if err != nil {
		return nil, err
	}
	a.v.resetFromEnv(lc)
	return lc, nil
}

// readSecretFile reads a credential file (auth.token_file, AppRole's
// files) trimmed of surrounding white space. Its error names the file only
// when the name looks like a path (UnreadableFile): a token pasted in place
// of the path is not repeated. The caller names the configuration key.
func readSecretFile(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", errors.New(UnreadableFile("credential file", path, err))
	}
	s := strings.TrimSpace(string(raw))
	if s == "" {
		return "", fmt.Errorf("credential file %s is empty", path)
	}
	return s, nil
}

// Bounds of the wait between attempts to find a token to renew again.
const (
	reauthFirst = 250 * time.Millisecond
	reauthMax   = 30 * time.Second
)

// recheckFirst is the wait after a check of the token, made on a refused
// call, before a refusal is acted on again. It doubles with each check up
// to reauthMax, and starts again after refusals stopped for reauthMax.
const recheckFirst = 2 * time.Second

// run renews the token until stopped; when it can no longer be renewed it
// finds one to renew again (reauth), backing off between attempts. While
// it has a token, a call Vault refused makes it check the token (recheck).
func (a *authRenewer) run(secret *vault.Secret) {
	defer a.wg.Done()
	log := a.v.log
	backoff := reauthFirst
	var failed error // why the last renewal ended, if it failed
	for {
		if secret != nil {
			began := time.Now()
			lease := time.Duration(secret.Auth.LeaseDuration) * time.Second
			a.expires = began.Add(lease)
			var next *vault.Secret // a token taken after a refused call
			var stopped bool
			failed = nil
			switch {
			case lease == 0:
				log.Info("vault token does not expire; no renewal needed")
				a.expires = time.Time{}
				next, stopped = a.wait(nil)
			case !secret.Auth.Renewable:
				// Not renewable (a batch token, one past its max TTL's
				// reach): nothing to do until shortly before its end,
				// then a new login or a token read again.
				next, stopped = a.wait(time.After(lease - max(lease/10, time.Second)))
			default:
				next, stopped, failed = a.watch(secret)
			}
			if stopped {
				return
			}
			if next != nil {
				secret = next
				continue
			}
			if time.Since(began) > reauthMax {
				backoff = reauthFirst
			}
		}
		// While the token in use is alive, the attempts come closer
		// together as it nears its end, so that one lands once Vault
		// answers again and before the token expires.
		wait := backoff
		if left := time.Until(a.expires); left > 0 {
			wait = min(wait, max(reauthFirst, left/4))
		}
		select {
		case <-a.quit:
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, reauthMax)
		ctx, cancel := a.context()
		s, err := a.reauth(ctx, failed != nil)
		cancel()
		if err != nil {
			log.Warn("vault token cannot be renewed yet; retrying", "error", err, "retry_in", backoff)
			secret = nil
			continue
		}
		secret = s
		a.forgetRefusals()
		log.Info("vault token renewal resumed")
	}
}

// context returns a context that ends when the renewer is stopped or
// cancel is called, which the caller must do.
func (a *authRenewer) context() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-a.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// wait waits until done fires (never, if nil) or the renewer is stopped
// (true), checking the token whenever Vault refuses a call; it returns
// early with a new token's secret if the check took one.
func (a *authRenewer) wait(done <-chan time.Time) (*vault.Secret, bool) {
	for {
		refusals, reopen := a.refusalsNow()
		select {
		case <-a.quit:
			return nil, true
		case <-done:
			return nil, false
		case <-reopen:
		case <-refusals:
			if s := a.recheck(); s != nil {
				return s, false
			}
		}
	}
}

// refusalsNow returns the channel of refusals while a check may be made,
// else nil and a channel that fires when one may: a refusal made until
// then waits in the channel.
func (a *authRenewer) refusalsNow() (<-chan struct{}, <-chan time.Time) {
	if d := time.Until(a.nextCheck); d > 0 {
		return nil, time.After(d)
	}
	return a.refusals, nil
}

// forgetRefusals drops a refusal made with a token no longer in use.
func (a *authRenewer) forgetRefusals() {
	select {
	case <-a.refusals:
	default:
	}
}

// recheck, after Vault refused a call, looks for a token to replace one
// Vault no longer knows (revoked, its uses spent, lost with a restore from
// a snapshot): with a token, the token read again, taken when it is a new
// one that works; with AppRole, if lookup-self refuses the token in use, a
// new login. It returns the new token's secret, or nil to go on with the
// token in use, which either Vault knows (the policy lacks the path, which
// no new token fixes) or has no replacement yet (a later refusal checks
// again; renewal goes on as before). The checks are paced (checkWait),
// so that a policy problem costs Vault a lookup, and AppRole no login,
// every reauthMax at most.
func (a *authRenewer) recheck() *vault.Secret {
	now := time.Now()
	if now.Sub(a.nextCheck) > reauthMax {
		a.checkWait = recheckFirst // the first refusal in a while
	}
	wait := a.checkWait
	a.nextCheck = now.Add(wait)
	a.checkWait = min(wait*2, reauthMax)
	log := a.v.log
	ctx, cancel := a.context()
	defer cancel()
	old := a.v.client.Token()
	if a.v.cfg.Auth.AppRole != nil {
		// A login may use up one of the secret id's uses: only for a
		// token Vault refuses.
		lctx, lcancel := context.WithTimeout(ctx, a.v.cfg.Timeout)
		_, err := a.v.client.Auth().Token().LookupSelfWithContext(lctx)
		lcancel()
		if err == nil {
			log.Warn("vault refused a call although the token is valid; check its policy", "next_check_in", wait)
			return nil
		}
		if err = classify("token lookup-self", err); !errors.Is(err, ErrPermissionDenied) {
			log.Warn("vault token not checked after a refused call", "error", err)
			return nil
		}
	}
	s, err := a.login(ctx)
	switch {
	case err != nil:
		log.Warn("vault refused a call and no new token works yet", "error", err, "next_check_in", wait)
		return nil
	case s.Auth.ClientToken == old:
		log.Warn("vault refused a call although the token is valid; check its policy", "next_check_in", wait)
		return nil
	}
	a.forgetRefusals()
	log.Warn("vault token replaced after a permission denial")
	return s
}

// reauth returns a token to renew: with AppRole, after a renewal that
// failed, the one in use if Vault renews it now (a login may use up a
// secret id's uses), else (and once it can be renewed no further) a new
// login; with a token, the token read again and looked up.
func (a *authRenewer) reauth(ctx context.Context, renewalFailed bool) (*vault.Secret, error) {
	if a.v.cfg.Auth.AppRole == nil || !renewalFailed {
		return a.login(ctx)
	}
	lctx, cancel := context.WithTimeout(ctx, a.v.cfg.Timeout)
	s, err := a.v.client.Auth().Token().RenewSelfWithContext(lctx, 0)
	cancel()
	if err == nil && s != nil && s.Auth != nil && s.Auth.Renewable && s.Auth.LeaseDuration > 0 {
		return s, nil
	}
	return a.login(ctx)
}

// watch renews secret until it can no longer be renewed (nil, false, nil)
// or a renewal fails (nil, false and the error) or the renewer is stopped
// (true), or a check made when Vault refused a call took a new token (its
// secret). A failed renewal ends it at once (RenewBehaviorErrorOnErrors),
// so that run paces the retries: the client's own retries, left to
// themselves, send renew-self in a tight loop while Vault is down.
func (a *authRenewer) watch(secret *vault.Secret) (*vault.Secret, bool, error) {
	w, err := a.v.client.NewLifetimeWatcher(&vault.LifetimeWatcherInput{Secret: secret, RenewBehavior: vault.RenewBehaviorErrorOnErrors})
	if err != nil {
		a.v.log.Warn("vault token renewal not started", "error", err)
		return nil, false, err
	}
	go w.Start()
	defer w.Stop()
	for {
		refusals, reopen := a.refusalsNow()
		select {
		case <-a.quit:
			return nil, true, nil
		case err := <-w.DoneCh():
			if errors.Is(err, vault.ErrLifetimeWatcherNotRenewable) {
				return nil, false, nil // renewal ended, as at the max TTL
			}
			if err != nil {
				a.v.log.Warn("vault token renewal stopped", "error", err)
			}
			return nil, false, err
		case r := <-w.RenewCh():
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				a.expires = r.RenewedAt.Add(time.Duration(r.Secret.Auth.LeaseDuration) * time.Second)
				a.v.log.Debug("vault token renewed", "ttl_seconds", r.Secret.Auth.LeaseDuration)
			}
		case <-reopen:
		case <-refusals:
			if s := a.recheck(); s != nil {
				return s, false, nil
			}
		}
	}
}
