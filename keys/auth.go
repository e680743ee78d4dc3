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
// It owns one goroutine, stopped by stop.
type authRenewer struct {
	v    *Vault
	quit chan struct{}
	// expires is when the token in use expires as last renewed (run's
	// goroutine only).
	expires time.Time
	wg      sync.WaitGroup
	once    sync.Once
}

// startAuth logs in and starts renewal.
func startAuth(ctx context.Context, v *Vault) (*authRenewer, error) {
	a := &authRenewer{v: v, quit: make(chan struct{})}
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

// run renews the token until stopped; when it can no longer be renewed it
// finds one to renew again (reauth), backing off between attempts.
func (a *authRenewer) run(secret *vault.Secret) {
	defer a.wg.Done()
	log := a.v.log
	backoff := reauthFirst
	var failed error // why the last renewal ended, if it failed
	for {
		if secret != nil {
			if secret.Auth.LeaseDuration == 0 {
				log.Info("vault token does not expire; no renewal needed")
				<-a.quit
				return
			}
			began := time.Now()
			lease := time.Duration(secret.Auth.LeaseDuration) * time.Second
			a.expires = began.Add(lease)
			var stopped bool
			if !secret.Auth.Renewable {
				// Not renewable (a batch token, one past its max TTL's
				// reach): nothing to do until shortly before its end,
				// then a new login or a token read again.
				failed = nil
				select {
				case <-a.quit:
					return
				case <-time.After(lease - max(lease/10, time.Second)):
				}
			} else if stopped, failed = a.watch(secret); stopped {
				return
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
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-a.quit:
				cancel()
			case <-ctx.Done():
			}
		}()
		s, err := a.reauth(ctx, failed != nil)
		cancel()
		if err != nil {
			log.Warn("vault token cannot be renewed yet; retrying", "error", err, "retry_in", backoff)
			secret = nil
			continue
		}
		secret = s
		log.Info("vault token renewal resumed")
	}
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

// watch renews secret until it can no longer be renewed (false, nil) or a
// renewal fails (false and the error) or the renewer is stopped (true). A failed renewal ends it at
// once (RenewBehaviorErrorOnErrors), so that run paces the retries: the
// client's own retries, left to themselves, send renew-self in a tight loop
// while Vault is down.
func (a *authRenewer) watch(secret *vault.Secret) (bool, error) {
	w, err := a.v.client.NewLifetimeWatcher(&vault.LifetimeWatcherInput{Secret: secret, RenewBehavior: vault.RenewBehaviorErrorOnErrors})
	if err != nil {
		a.v.log.Warn("vault token renewal not started", "error", err)
		return false, err
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-a.quit:
			return true, nil
		case err := <-w.DoneCh():
			if errors.Is(err, vault.ErrLifetimeWatcherNotRenewable) {
				return false, nil // renewal ended, as at the max TTL
			}
			if err != nil {
				a.v.log.Warn("vault token renewal stopped", "error", err)
			}
			return false, err
		case r := <-w.RenewCh():
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				a.expires = r.RenewedAt.Add(time.Duration(r.Secret.Auth.LeaseDuration) * time.Second)
				a.v.log.Debug("vault token renewed", "ttl_seconds", r.Secret.Auth.LeaseDuration)
			}
		}
	}
}
