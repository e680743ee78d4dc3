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
// is renewed with renew-self by a lifetime watcher; when an AppRole token
// reaches its maximum TTL the renewer logs in again. It owns one goroutine,
// stopped by stop.
type authRenewer struct {
	v    *Vault
	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
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
				return nil, newError("approle login", nil, err)
			}
		}
		secretID, err := readSecretFile(ar.SecretIDFile)
		if err != nil {
			return nil, newError("approle login", nil, err)
		}
		c.ClearToken()
		s, err := c.Logical().WriteWithContext(ctx, "auth/"+ar.Mount+"/login", map[string]any{"role_id": roleID, "secret_id": secretID})
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
			return nil, newError("token login", nil, err)
		}
	}
	c.SetToken(token)
	s, err := c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return nil, classify("token lookup-self", err)
	}
	renewable, _ := s.TokenIsRenewable()
	ttl, _ := s.TokenTTL()
	return &vault.Secret{Auth: &vault.SecretAuth{ClientToken: token, Renewable: renewable, LeaseDuration: int(ttl / time.Second)}}, nil
}

func readSecretFile(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read credential file: %w", err)
	}
	s := strings.TrimSpace(string(raw))
	if s == "" {
		return "", fmt.Errorf("credential file %s is empty", path)
	}
	return s, nil
}

// run renews the token until stopped, logging in again with AppRole when the
// token can no longer be renewed.
func (a *authRenewer) run(secret *vault.Secret) {
	defer a.wg.Done()
	log := a.v.log
	backoff := time.Second
	for {
		if secret != nil {
			if secret.Auth.LeaseDuration == 0 {
				log.Info("vault token does not expire; no renewal needed")
				<-a.quit
				return
			}
			if stopped := a.watch(secret); stopped {
				return
			}
		}
		if a.v.cfg.Auth.AppRole == nil {
			log.Warn("vault token can no longer be renewed; key operations will fail once it expires")
			<-a.quit
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-a.quit:
				cancel()
			case <-ctx.Done():
			}
		}()
		s, err := a.login(ctx)
		cancel()
		if err != nil {
			log.Warn("vault approle login failed; retrying", "error", err, "retry_in", backoff)
			secret = nil
			select {
			case <-a.quit:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Minute)
			continue
		}
		backoff = time.Second
		secret = s
		log.Info("vault approle login renewed the token")
	}
}

// watch renews secret until it can no longer be renewed (false) or the
// renewer is stopped (true).
func (a *authRenewer) watch(secret *vault.Secret) bool {
	w, err := a.v.client.NewLifetimeWatcher(&vault.LifetimeWatcherInput{Secret: secret})
	if err != nil {
		a.v.log.Warn("vault token renewal not started", "error", err)
		return false
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-a.quit:
			return true
		case err := <-w.DoneCh():
			if err != nil {
				a.v.log.Warn("vault token renewal stopped", "error", err)
			}
			return false
		case r := <-w.RenewCh():
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				a.v.log.Debug("vault token renewed", "ttl_seconds", r.Secret.Auth.LeaseDuration)
			}
		}
	}
}
