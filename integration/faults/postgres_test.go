package faults

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// privatePostgres is a Postgres cluster of the test's own, in a temporary
// directory, listening on its own port. Stop and Start make a real outage
// without touching any other Postgres on the machine.
type privatePostgres struct {
	t       testing.TB
	bin     string
	dataDir string
	port    int
	asUser  string // non-empty: run the server as this user (the test runs as root)
}

// startPostgres creates a cluster with initdb and starts it. It skips the
// test when no Postgres server binaries are installed.
func startPostgres(t testing.TB) *privatePostgres {
	t.Helper()
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		t.Skip("faults: no Postgres server binaries under /usr/lib/postgresql")
	}
	p := &privatePostgres{t: t, bin: filepath.Dir(matches[len(matches)-1]), port: freePort(t)}
	// initdb refuses to run as root; the cluster then belongs to the
	// postgres system user, in a directory it can reach.
	dir, err := os.MkdirTemp("", "clearance-faults-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("faults: running as root without a postgres user to own the private cluster")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		p.asUser = "postgres"
	}
	p.dataDir = filepath.Join(dir, "data")
	p.run("initdb", "-D", p.dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	conf := fmt.Sprintf("\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nfsync = off\nmax_connections = 100\n", p.port, dir)
	p.appendConf(conf)
	p.Start()
	t.Cleanup(func() { p.stop("immediate") })
	return p
}

// DSN is the connection string of the cluster's postgres database.
func (p *privatePostgres) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
}

// Start starts the server and waits until it accepts connections.
func (p *privatePostgres) Start() {
	p.t.Helper()
	p.run("pg_ctl", "-D", p.dataDir, "-l", filepath.Join(p.dataDir, "server.log"), "-w", "-t", "60", "start")
}

// Stop stops the server (fast shutdown: open connections are cut).
func (p *privatePostgres) Stop() { p.stop("fast") }

func (p *privatePostgres) stop(mode string) {
	args := []string{filepath.Join(p.bin, "pg_ctl"), "-D", p.dataDir, "-m", mode, "-w", "-t", "60", "stop"}
	_ = p.command(args...).Run()
}

func (p *privatePostgres) appendConf(s string) {
	p.t.Helper()
	f, err := os.OpenFile(filepath.Join(p.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		p.t.Fatal(err)
	}
}

func (p *privatePostgres) run(tool string, args ...string) {
	p.t.Helper()
	cmd := p.command(append([]string{filepath.Join(p.bin, tool)}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("faults: %s: %v\n%s", tool, err, out)
	}
}

func (p *privatePostgres) command(args ...string) *exec.Cmd {
	if p.asUser != "" {
		args = append([]string{"runuser", "-u", p.asUser, "--"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = os.TempDir()
	cmd.Env = append(filterEnv(os.Environ(), "PG"), "LC_ALL=C")
	return cmd
}

// filterEnv drops variables starting with prefix.
func filterEnv(env []string, prefix string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}
