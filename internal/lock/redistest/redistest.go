// Package redistest runs a real redis-server for tests: on 127.0.0.1, a free
// port, no persistence, in a temporary folder, stopped by PID when the test
// ends. It can be killed and restarted on the same port to play an outage,
// paused (SIGSTOP) to play a stalled node, run as a replica, a sentinel
// (redis-server --sentinel), a Cluster node, or with TLS.
// A missing redis-server (or redis-cli) binary fails the test with one line
// naming it and `make deps` (scripts/deps.sh installs it); it never skips.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/testdeps"
)

// Options shape a server; the zero value is a plain standalone node.
type Options struct {
	// Args are extra redis-server arguments, e.g. "--replicaof",
	// "127.0.0.1", "6380" or "--cluster-enabled", "yes".
	Args []string
	// Sentinel, when not empty, runs the server as a sentinel (redis-server
	// <conf> --sentinel) whose config file holds these lines (sentinel
	// monitor ...) after the port, bind and dir lines.
	Sentinel string
	// TLS, when set, also serves TLS on TLSAddr with these PEM files (the
	// plain port stays for the readiness check).
	TLS *TLSFiles
	// Password, when set, is the server's requirepass (a sentinel's own
	// password, in a sentinel).
	Password string
	// TLSReplication (with TLS) makes the server speak TLS to the servers it
	// reaches (a replica to its primary, a sentinel to every node) and
	// announce its TLS port, so that what sentinels and primaries hand out
	// are TLS addresses.
	TLSReplication bool
}

// TLSFiles are the PEM files of a TLS server.
type TLSFiles struct{ Cert, Key, CA string }

// Binary returns the path of a Redis binary (redis-server, redis-cli), or
// fails the test with one line saying how to install it.
func Binary(t testing.TB, name string) string {
	t.Helper()
	return testdeps.Command(t, name, "the Redis tests")
}

// Server is one redis-server process (or the slot for one, while killed).
type Server struct {
	t       testing.TB
	bin     string
	dir     string
	port    int
	tlsPort int
	opt     Options

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs a fresh redis-server and waits until it answers PING.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith runs a fresh redis-server shaped by o and waits until it
// answers PING.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t, "redis-server"), dir: t.TempDir(), port: freePort(t), opt: o}
	if o.TLS != nil {
		s.tlsPort = freePort(t)
	}
	s.Restart()
	t.Cleanup(s.Kill)
	return s
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Port is the server's (plain) port.
func (s *Server) Port() int { return s.port }

// TLSAddr is host:port of the TLS listener ("" without Options.TLS).
func (s *Server) TLSAddr() string {
	if s.tlsPort == 0 {
		return ""
	}
	return "127.0.0.1:" + strconv.Itoa(s.tlsPort)
}

// Dir is the server's working folder (its config and Cluster files).
func (s *Server) Dir() string { return s.dir }

// PID is the process id of the running server, 0 when it is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Pause stops the process (SIGSTOP): it keeps its sockets but answers
// nothing, as a stalled node. Resume continues it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.t.Fatalf("redistest: signal %v to a server that is not running", sig)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("redistest: signal %v: %v", sig, err)
	}
}

// URL is the redis:// URL of database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Kill stops the server at once (SIGKILL by PID) and waits for it to exit.
// Safe to call when it is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart starts the server again on the same port (with empty data, since
// nothing is persisted) and waits until it answers PING. Call it from the
// test goroutine: it fails the test when the server cannot start.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.t.Fatalf("redistest: Restart while running")
	}
	var lastErr error
	// The port may still be held for a moment by the previous process
	// (redis-server then exits at once): retry, for 15s at most in all.
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if lastErr = s.startLocked(); lastErr == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redistest: %v", lastErr)
}

func (s *Server) startLocked() error {
	args := []string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(s.port),
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
	}
	if s.opt.Sentinel != "" {
		// A sentinel needs a config file it can rewrite; a restart keeps
		// what it learnt.
		conf := filepath.Join(s.dir, "sentinel.conf")
		if _, err := os.Stat(conf); err != nil {
			body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n%s\n", s.port, s.dir, s.opt.Sentinel)
			if s.opt.TLS != nil && s.opt.TLSReplication {
				body += fmt.Sprintf("sentinel announce-port %d\n", s.tlsPort)
			}
			if s.opt.Password != "" {
				body += "requirepass " + s.opt.Password + "\n"
			}
			if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
				return fmt.Errorf("sentinel config: %w", err)
			}
		}
		args = []string{conf, "--sentinel", "--daemonize", "no", "--loglevel", "warning"}
	}
	if f := s.opt.TLS; f != nil {
		args = append(args, "--tls-port", strconv.Itoa(s.tlsPort), "--tls-cert-file", f.Cert,
			"--tls-key-file", f.Key, "--tls-ca-cert-file", f.CA, "--tls-auth-clients", "no")
		if s.opt.TLSReplication {
			args = append(args, "--tls-replication", "yes")
			if s.opt.Sentinel == "" {
				args = append(args, "--replica-announce-port", strconv.Itoa(s.tlsPort))
			}
		}
	}
	if s.opt.Password != "" && s.opt.Sentinel == "" {
		args = append(args, "--requirepass", s.opt.Password, "--masterauth", s.opt.Password)
	}
	args = append(args, s.opt.Args...)
	cmd := exec.Command(s.bin, args...)
	logs := &strings.Builder{}
	var logMu sync.Mutex
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("pipe: %w", err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			logMu.Lock()
			logs.WriteString(sc.Text() + "\n")
			logMu.Unlock()
		}
		_ = cmd.Wait()
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			logMu.Lock()
			defer logMu.Unlock()
			return fmt.Errorf("redis-server exited at start:\n%s", logs.String())
		default:
		}
		if ping(s.Addr()) == nil {
			s.cmd, s.done = cmd, done
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("redis-server did not answer PING on %s in 5s", s.Addr())
}

// ping speaks just enough RESP to know the server is ready.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	// A server that asks for a password is up all the same.
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
