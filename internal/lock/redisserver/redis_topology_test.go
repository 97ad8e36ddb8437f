package redisserver_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/lock/locktest"
	"github.com/composio-guard/composio-guard/internal/lock/redistest"
	"github.com/composio-guard/composio-guard/internal/metrics"
)

// These tests run real redis-server processes (one node with TLS or ACL, a
// primary with a replica, Sentinel, Cluster); they fail when redis-server
// or redis-cli is missing (make deps).

// withMinReplicas sets GUARD_REDIS_MIN_REPLICAS, with a Redis timeout of
// 1s when it waits: WAIT gets 667ms, room enough on a busy shared machine
// for a live replica to acknowledge.
func withMinReplicas(n int) func(*lock.Settings, *lock.RedisOptions) {
	return func(s *lock.Settings, _ *lock.RedisOptions) {
		s.RedisMinReplicas = n
		if n > 0 {
			s.RedisTimeout = time.Second
		}
	}
}

func unreplicated(t *testing.T, m *metrics.Metrics, op string) float64 {
	return locktest.Value(t, m.LockUnreplicated.WithLabelValues(op))
}

// tlsFiles writes a CA and a server certificate for 127.0.0.1 signed by it.
func tlsFiles(t *testing.T) (files *redistest.TLSFiles, otherCA string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return cert, key, der
	}
	ca, caKey, caDER := newCA("guard test CA")
	_, _, otherDER := newCA("another CA")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		// Client auth too: cluster nodes and sentinels present it when they dial one another over TLS.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &redistest.TLSFiles{
		Cert: write("server.pem", "CERTIFICATE", der),
		Key:  write("server.key", "EC PRIVATE KEY", keyDER),
		CA:   write("ca.pem", "CERTIFICATE", caDER),
	}, write("other-ca.pem", "CERTIFICATE", otherDER)
}

func TestRedisServerTLS(t *testing.T) {
	files, otherCA := tlsFiles(t)
	srv := redistest.StartWith(t, redistest.Options{TLS: files})
	ctx := context.Background()
	for _, tc := range []struct {
		name, url, ca string
		ok            bool
	}{
		{"verified by GUARD_REDIS_CA_FILE", "rediss://" + srv.TLSAddr() + "/0", files.CA, true},
		{"system roots do not know the CA", "rediss://" + srv.TLSAddr() + "/0", "", false},
		{"another CA", "rediss://" + srv.TLSAddr() + "/0", otherCA, false},
		{"plain text to the TLS port", "redis://" + srv.TLSAddr() + "/0", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, m := locktest.NewRedis(t, tc.url, func(s *lock.Settings, _ *lock.RedisOptions) { s.RedisCAFile = tc.ca })
			err := s.PutLease(ctx, "k", lock.Lease{AccountID: "ca_tls", ExpiresAt: time.Now().Add(time.Minute)})
			if (err == nil) != tc.ok {
				t.Fatalf("PutLease: %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok {
				if locktest.Up(t, m) != 0 {
					t.Fatal("lock_backend_up is 1 after a failed TLS call")
				}
				return
			}
			l, ok, err := s.GetLease(ctx, "k", "")
			if err != nil || !ok || l.AccountID != "ca_tls" {
				t.Fatalf("GetLease over TLS = %+v %v %v", l, ok, err)
			}
			u, err := locktest.LockFor(t, s, "tls-lock", time.Minute, time.Second)
			if err != nil {
				t.Fatalf("Lock over TLS: %v", err)
			}
			u()
		})
	}
}

func TestRedisServerACL(t *testing.T) {
	const pass = "acl-pa55-w0rd"
	srv := redistest.StartWith(t, redistest.Options{Args: []string{
		"--user", "guard", "on", ">" + pass, "~composio-guard:*", "+@all",
		"--user", "default", "on", "nopass", "-@all", "+ping", // PING only (the readiness check)
	}})
	ctx := context.Background()
	good, _ := locktest.NewRedis(t, "redis://guard:"+pass+"@"+srv.Addr()+"/0")
	locktest.Run(t, func(t *testing.T) lock.Store { return good })
	if err := good.PutLease(ctx, "acl", lock.Lease{ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatalf("PutLease with the ACL user: %v", err)
	}
	for _, url := range []string{
		"redis://guard:wrong-" + pass + "@" + srv.Addr() + "/0",
		"redis://" + srv.Addr() + "/0", // the default user may only PING
	} {
		bad, _ := locktest.NewRedis(t, url)
		err := bad.PutLease(ctx, "acl", lock.Lease{ExpiresAt: time.Now().Add(time.Minute)})
		if err == nil {
			t.Fatalf("PutLease with bad credentials succeeded")
		}
		if strings.Contains(err.Error(), pass) {
			t.Fatalf("error leaks the password: %v", err)
		}
	}
	// The ACL's key pattern is the prefix: a store with another prefix is refused.
	other, _ := locktest.NewRedis(t, "redis://guard:"+pass+"@"+srv.Addr()+"/0", func(s *lock.Settings, _ *lock.RedisOptions) { s.RedisKeyPrefix = "other:" })
	if err := other.PutLease(ctx, "acl", lock.Lease{ExpiresAt: time.Now().Add(time.Minute)}); err == nil {
		t.Fatal("the ACL let a key outside composio-guard:* through")
	}
}

// primaryWithReplica starts a primary and one replica in sync with it.
func primaryWithReplica(t *testing.T) (primary, replica *redistest.Server) {
	t.Helper()
	primary = redistest.Start(t)
	replica = redistest.StartWith(t, redistest.Options{Args: []string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.Port())}})
	waitInSync(t, primary)
	return primary, replica
}

func waitInSync(t *testing.T, primary *redistest.Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := redistest.Info(primary.Addr(), "INFO", "replication")
		if err == nil && info["connected_slaves"] == "1" && strings.Contains(info["slave0"], "state=online") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica of %s not online: %v %v", primary.Addr(), info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRedisMinReplicas(t *testing.T) {
	primary, replica := primaryWithReplica(t)
	s, m := locktest.NewRedis(t, primary.URL(), withMinReplicas(1))
	ctx := context.Background()
	raw := rawClient(t, primary)
	k := lock.Key("ac_1", "user_min_replicas", "PRIVATE")

	// Replicated: the lock and the lease are trusted, nothing counted.
	u, err := locktest.LockFor(t, s, k, time.Minute, time.Second)
	if err != nil {
		t.Fatalf("Lock with a live replica: %v", err)
	}
	u()
	if err := s.PutLease(ctx, k, lock.Lease{AccountID: "ca_1", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatalf("PutLease with a live replica: %v", err)
	}
	if unreplicated(t, m, lock.UnreplicatedLock)+unreplicated(t, m, lock.UnreplicatedLease) != 0 {
		t.Fatal("lock_unreplicated_total moved while the replica acknowledged")
	}

	// The replica stalls: WAIT on the write's own connection runs out, so
	// the lock is refused and freed, the lease kept on the primary; both counted.
	replica.Pause()
	defer replica.Resume()
	start := time.Now()
	_, err = locktest.LockFor(t, s, k, time.Minute, 5*time.Second)
	took := time.Since(start)
	if !errors.Is(err, lock.ErrUnreplicated) || errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("Lock with a stalled replica: %v, want ErrUnreplicated", err)
	}
	if took > 1500*time.Millisecond { // the store's RedisTimeout is 1s
		t.Errorf("unreplicated Lock took %v, want it bounded by the Redis timeout", took)
	}
	if got := unreplicated(t, m, lock.UnreplicatedLock); got != 1 {
		t.Fatalf("lock_unreplicated_total{op=lock} = %v, want 1", got)
	}
	lockKey := locktest.Prefix + "lock:{" + k + "}"
	deadline := time.Now().Add(2 * time.Second)
	for raw.Exists(ctx, lockKey).Val() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the unreplicated lock was left held on the primary")
		}
		time.Sleep(10 * time.Millisecond)
	}
	err = s.PutLease(ctx, k, lock.Lease{AccountID: "ca_2", ExpiresAt: time.Now().Add(time.Minute)})
	if !errors.Is(err, lock.ErrUnreplicated) {
		t.Fatalf("PutLease with a stalled replica: %v, want ErrUnreplicated", err)
	}
	if l, ok, err := s.GetLease(ctx, k, ""); err != nil || !ok || l.AccountID != "ca_2" {
		t.Fatalf("the unreplicated lease is not on the primary: %+v %v %v", l, ok, err)
	}
	if got := unreplicated(t, m, lock.UnreplicatedLease); got != 1 {
		t.Fatalf("lock_unreplicated_total{op=lease} = %v, want 1", got)
	}

	replica.Resume()
	waitInSync(t, primary)
	deadline = time.Now().Add(5 * time.Second)
	for {
		u, err := locktest.LockFor(t, s, k, time.Minute, time.Second)
		if err == nil {
			u()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Lock after the replica came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedisTwoHolders reproduces the failover: holder A takes the
// lock, the primary dies before replicating it, the replica is promoted and
// holder B takes the same lock. Without GUARD_REDIS_MIN_REPLICAS that is two
// holders; with 1, A is refused its unreplicated lock, so B is the only one.
func TestRedisTwoHolders(t *testing.T) {
	for _, minReplicas := range []int{0, 1} {
		t.Run("min_replicas="+strconv.Itoa(minReplicas), func(t *testing.T) {
			primary, replica := primaryWithReplica(t)
			a, _ := locktest.NewRedis(t, primary.URL(), withMinReplicas(minReplicas))
			k := lock.Key("ac_1", "user_two_holders", "PRIVATE")

			// The replication link is cut before A writes: the replica will
			// never see A's lock (a stalled replica, then a dead primary).
			replica.Pause()
			if _, err := redistest.Do(primary.Addr(), "CLIENT", "KILL", "TYPE", "replica"); err != nil {
				t.Fatalf("CLIENT KILL TYPE replica: %v", err)
			}
			_, errA := locktest.LockFor(t, a, k, time.Minute, time.Second)
			primary.Kill()
			replica.Resume()
			if _, err := redistest.Do(replica.Addr(), "REPLICAOF", "NO", "ONE"); err != nil {
				t.Fatalf("promote the replica: %v", err)
			}
			b, _ := locktest.NewRedis(t, replica.URL(), withMinReplicas(0)) // the promoted node has no replica left
			_, errB := locktest.LockFor(t, b, k, time.Minute, time.Second)
			holders := 0
			for _, err := range []error{errA, errB} {
				if err == nil {
					holders++
				}
			}
			t.Logf("holder A: %v; holder B: %v; holders: %d", errA, errB, holders)
			switch minReplicas {
			case 0:
				if holders != 2 {
					t.Fatalf("without MIN_REPLICAS the scenario should show two holders, got %d", holders)
				}
			default:
				if !errors.Is(errA, lock.ErrUnreplicated) || errB != nil || holders != 1 {
					t.Fatalf("with MIN_REPLICAS=1: A %v (want ErrUnreplicated), B %v (want the lock), holders %d", errA, errB, holders)
				}
			}
		})
	}
}

func TestRedisServerSentinel(t *testing.T) {
	set := redistest.StartSentinel(t, redistest.SentinelOptions{})
	var n atomic.Int64
	locktest.Run(t, func(t *testing.T) lock.Store {
		p := "sentinel-" + strconv.FormatInt(n.Add(1), 10) + ":"
		s, _ := locktest.NewRedis(t, set.URL(), withMinReplicas(1), func(s *lock.Settings, _ *lock.RedisOptions) { s.RedisKeyPrefix = p })
		return s
	})
	// The lock went to the primary the sentinels name, and reached the replica.
	s, m := locktest.NewRedis(t, set.URL(), withMinReplicas(1))
	if got := s.(*lock.Redis).Topology(); got != lock.TopologySentinel {
		t.Fatalf("Topology() = %q", got)
	}
	k := lock.Key("ac_1", "user_sentinel", "PRIVATE")
	u, err := locktest.LockFor(t, s, k, time.Minute, time.Second)
	if err != nil {
		t.Fatalf("Lock through Sentinel: %v", err)
	}
	defer u()
	if r, err := redistest.Do(set.Replica.Addr(), "EXISTS", locktest.Prefix+"lock:{"+k+"}"); err != nil || r[0] != "1" {
		t.Fatalf("the lock is not on the replica right after Lock returned (MIN_REPLICAS=1): %v %v", r, err)
	}
	if unreplicated(t, m, lock.UnreplicatedLock) != 0 {
		t.Fatal("lock_unreplicated_total moved")
	}
}

func TestRedisServerCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	var n atomic.Int64
	locktest.Run(t, func(t *testing.T) lock.Store {
		p := "cluster-" + strconv.FormatInt(n.Add(1), 10) + ":"
		s, _ := locktest.NewRedis(t, cl.URL(), func(s *lock.Settings, _ *lock.RedisOptions) { s.RedisKeyPrefix = p })
		return s
	})

	ctx := context.Background()
	s, m := locktest.NewRedis(t, cl.URL())
	if got := s.(*lock.Redis).Topology(); got != lock.TopologyCluster {
		t.Fatalf("Topology() = %q", got)
	}
	raw := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{cl.Nodes[0].Addr()}})
	t.Cleanup(func() { raw.Close() })
	// Many keys spread over the three masters, each one's lock and lease in one slot.
	nodes := map[string]bool{}
	for i := range 30 {
		k := lock.Key("ac_cluster", "user_"+strconv.Itoa(i), "PRIVATE")
		u, err := locktest.LockFor(t, s, k, time.Minute, time.Second)
		if err != nil {
			t.Fatalf("Lock on Cluster: %v", err)
		}
		if err := s.PutLease(ctx, k, lock.Lease{AccountID: "ca_" + strconv.Itoa(i), ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
			t.Fatalf("PutLease on Cluster: %v", err)
		}
		ls, err1 := raw.ClusterKeySlot(ctx, locktest.Prefix+"lock:{"+k+"}").Result()
		es, err2 := raw.ClusterKeySlot(ctx, locktest.Prefix+"lease:{"+k+"}:").Result()
		if err1 != nil || err2 != nil || ls != es {
			t.Fatalf("lock slot %d, lease slot %d (%v %v): want one slot", ls, es, err1, err2)
		}
		node, err := raw.MasterForKey(ctx, locktest.Prefix+"lock:{"+k+"}")
		if err != nil {
			t.Fatal(err)
		}
		nodes[node.Options().Addr] = true
		u()
	}
	if len(nodes) != 3 {
		t.Errorf("30 keys landed on %d masters, want all 3", len(nodes))
	}
	if got := locktest.LockErrs(t, m, lock.RedisErrServer) + locktest.LockErrs(t, m, lock.RedisErrLost); got != 0 {
		t.Fatalf("lock_errors_total{server_error|release_lost} = %v on Cluster (a CROSSSLOT or MOVED error?)", got)
	}

	// WAIT goes to the node of the key: with MIN_REPLICAS=1 and masters
	// without replicas, the lock is refused, and only that node saw WAIT.
	w, wm := locktest.NewRedis(t, cl.URL(), withMinReplicas(1))
	k := lock.Key("ac_cluster", "user_wait", "PRIVATE")
	owner, err := raw.MasterForKey(ctx, locktest.Prefix+"lock:{"+k+"}")
	if err != nil {
		t.Fatal(err)
	}
	before := waitCalls(t, cl)
	if _, err := locktest.LockFor(t, w, k, time.Minute, time.Second); !errors.Is(err, lock.ErrUnreplicated) {
		t.Fatalf("Lock on masters without replicas, MIN_REPLICAS=1: %v, want ErrUnreplicated", err)
	}
	after := waitCalls(t, cl)
	for addr := range after {
		d := after[addr] - before[addr]
		want := 0
		if addr == owner.Options().Addr {
			want = 1
		}
		if d != want {
			t.Errorf("node %s got %d WAIT(s), want %d (the key's node is %s)", addr, d, want, owner.Options().Addr)
		}
	}
	if unreplicated(t, wm, lock.UnreplicatedLock) != 1 {
		t.Error("lock_unreplicated_total{op=lock} did not count the refusal")
	}
}

// waitCalls reads how many WAIT commands each node has run.
func waitCalls(t *testing.T, cl *redistest.Cluster) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, n := range cl.Nodes {
		info, err := redistest.Info(n.Addr(), "INFO", "commandstats")
		if err != nil {
			t.Fatal(err)
		}
		calls := 0
		if v, ok := info["cmdstat_wait"]; ok {
			f, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
			calls, _ = strconv.Atoi(f)
		}
		out[n.Addr()] = calls
	}
	return out
}

// TestRedisServerSentinelCredentials: the sentinels and the data nodes have
// different passwords; the URL carries each in its own place (user info for
// the data nodes, sentinel_password for the sentinels), and a wrong one of
// either is refused without being quoted.
func TestRedisServerSentinelCredentials(t *testing.T) {
	const dataPw, sentinelPw = "data-Pa55-w0rd", "sentinel-Pa55-w0rd"
	set := redistest.StartSentinel(t, redistest.SentinelOptions{DataPassword: dataPw, SentinelPassword: sentinelPw})
	hosts := strings.TrimPrefix(set.URL(), "redis+sentinel://")
	url := func(data, sentinel string) string {
		return "redis+sentinel://:" + data + "@" + hosts + "?sentinel_password=" + sentinel
	}
	ctx := context.Background()
	s, _ := locktest.NewRedis(t, url(dataPw, sentinelPw), withMinReplicas(1))
	k := lock.Key("ac_1", "user_sentinel_auth", "PRIVATE")
	u, err := locktest.LockFor(t, s, k, time.Minute, time.Second)
	if err != nil {
		t.Fatalf("Lock with both passwords right: %v", err)
	}
	u()
	if err := s.PutLease(ctx, k, lock.Lease{AccountID: "ca_1", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatalf("PutLease with both passwords right: %v", err)
	}
	for name, u := range map[string]string{
		"wrong data password":     url("wrong-"+dataPw, sentinelPw),
		"wrong sentinel password": url(dataPw, "wrong-"+sentinelPw),
		"passwords swapped":       url(sentinelPw, dataPw),
	} {
		t.Run(name, func(t *testing.T) {
			bad, _ := locktest.NewRedis(t, u)
			err := bad.PutLease(ctx, k, lock.Lease{ExpiresAt: time.Now().Add(time.Minute)})
			if err == nil {
				t.Fatal("PutLease succeeded")
			}
			if strings.Contains(err.Error(), dataPw) || strings.Contains(err.Error(), sentinelPw) {
				t.Fatalf("error leaks a password: %v", err)
			}
		})
	}
}

// TestRedisServerSentinelTLS: rediss+sentinel:// end to end. The sentinels,
// the primary and the replica serve TLS with a private CA, replication and
// the sentinels' own links run over TLS, and the sentinels hand out the
// primary's TLS address. The store verifies every server against
// GUARD_REDIS_CA_FILE, its lock reaches the replica (MIN_REPLICAS=1), and
// it follows a failover to the promoted replica by itself. Without the CA,
// nothing is trusted.
func TestRedisServerSentinelTLS(t *testing.T) {
	files, _ := tlsFiles(t)
	set := redistest.StartSentinel(t, redistest.SentinelOptions{TLS: files})
	url := set.URL()
	if !strings.HasPrefix(url, "rediss+sentinel://") {
		t.Fatalf("URL %q, want rediss+sentinel://", url)
	}
	if addr, err := set.Master(); err != nil || addr != set.Primary.TLSAddr() {
		t.Fatalf("the sentinels name %q (%v), want the primary's TLS address %s", addr, err, set.Primary.TLSAddr())
	}
	withCA := func(s *lock.Settings, _ *lock.RedisOptions) { s.RedisCAFile = files.CA }
	s, m := locktest.NewRedis(t, url, withMinReplicas(1), withCA)
	if got := s.(*lock.Redis).Topology(); got != lock.TopologySentinel {
		t.Fatalf("Topology() = %q", got)
	}
	ctx := context.Background()
	k := lock.Key("ac_1", "user_sentinel_tls", "PRIVATE")
	u, err := locktest.LockFor(t, s, k, time.Minute, time.Second)
	if err != nil {
		t.Fatalf("Lock through Sentinel over TLS: %v", err)
	}
	if r, err := redistest.Do(set.Replica.Addr(), "EXISTS", locktest.Prefix+"lock:{"+k+"}"); err != nil || r[0] != "1" {
		t.Fatalf("the lock is not on the replica right after Lock returned (MIN_REPLICAS=1): %v %v", r, err)
	}
	u()
	if err := s.PutLease(ctx, k, lock.Lease{AccountID: "ca_tls", Owner: "o1", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatalf("PutLease over TLS: %v", err)
	}
	if l, ok, err := s.GetLease(ctx, k, "o1"); err != nil || !ok || l.AccountID != "ca_tls" {
		t.Fatalf("GetLease over TLS = %+v %v %v", l, ok, err)
	}
	if unreplicated(t, m, lock.UnreplicatedLock) != 0 {
		t.Fatal("lock_unreplicated_total moved")
	}

	t.Run("without the CA", func(t *testing.T) {
		bad, bm := locktest.NewRedis(t, url)
		if err := bad.PutLease(ctx, k, lock.Lease{Owner: "o2", ExpiresAt: time.Now().Add(time.Minute)}); err == nil {
			t.Fatal("PutLease succeeded against servers the system roots do not know")
		}
		if locktest.Up(t, bm) != 0 {
			t.Fatal("lock_backend_up is 1 after a failed TLS call")
		}
	})

	t.Run("failover", func(t *testing.T) {
		old := set.Primary.TLSAddr()
		set.Primary.Kill()
		deadline := time.Now().Add(30 * time.Second)
		for {
			addr, err := set.Master()
			if err == nil && addr != old {
				if addr != set.Replica.TLSAddr() {
					t.Fatalf("the sentinels promoted %s, want the replica's TLS address %s", addr, set.Replica.TLSAddr())
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no promotion in 30s: %q %v", addr, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// A store on the same URL (MIN_REPLICAS=0: the promoted replica has
		// no replica of its own) finds the new primary through the
		// sentinels and takes locks on it over TLS.
		after, _ := locktest.NewRedis(t, url, withMinReplicas(0), withCA)
		k2 := lock.Key("ac_1", "user_sentinel_tls_after", "PRIVATE")
		for {
			u, err := locktest.LockFor(t, after, k2, time.Minute, time.Second)
			if err == nil {
				u()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no lock on the promoted primary over TLS: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if l, ok, err := after.GetLease(ctx, k, "o1"); err != nil || !ok || l.AccountID != "ca_tls" {
			t.Fatalf("the lease written before the failover, read after it = %+v %v %v", l, ok, err)
		}
	})
}

// TestRedisServerClusterTLS: rediss+cluster:// end to end. Three masters
// serve TLS with a private CA and speak TLS on the cluster bus; the slot map
// the client reads names TLS ports. Locks and leases of many keys, spread
// over the masters, work over TLS; without the CA nothing is trusted.
func TestRedisServerClusterTLS(t *testing.T) {
	files, _ := tlsFiles(t)
	cl := redistest.StartClusterWith(t, 3, files)
	url := cl.URL()
	if !strings.HasPrefix(url, "rediss+cluster://") {
		t.Fatalf("URL %q, want rediss+cluster://", url)
	}
	s, _ := locktest.NewRedis(t, url, func(s *lock.Settings, _ *lock.RedisOptions) { s.RedisCAFile = files.CA })
	if got := s.(*lock.Redis).Topology(); got != lock.TopologyCluster {
		t.Fatalf("Topology() = %q", got)
	}
	ctx := context.Background()
	masters := map[string]bool{}
	for i := range 30 {
		k := lock.Key("ac_cluster_tls", "user_"+strconv.Itoa(i), "PRIVATE")
		u, err := locktest.LockFor(t, s, k, time.Minute, time.Second)
		if err != nil {
			t.Fatalf("Lock on Cluster over TLS: %v", err)
		}
		if err := s.PutLease(ctx, k, lock.Lease{AccountID: "ca_" + strconv.Itoa(i), Owner: "o", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
			t.Fatalf("PutLease on Cluster over TLS: %v", err)
		}
		if l, ok, err := s.GetLease(ctx, k, "o"); err != nil || !ok || l.AccountID != "ca_"+strconv.Itoa(i) {
			t.Fatalf("GetLease on Cluster over TLS = %+v %v %v", l, ok, err)
		}
		u()
		// Which master holds it, asked over the plain port.
		for _, n := range cl.Nodes {
			if r, err := redistest.Do(n.Addr(), "EXISTS", locktest.Prefix+"lease:{"+k+"}:o"); err == nil && len(r) == 1 && r[0] == "1" {
				masters[n.Addr()] = true
			}
		}
	}
	if len(masters) < 2 {
		t.Errorf("30 keys landed on %d master(s), want them spread", len(masters))
	}
	bad, _ := locktest.NewRedis(t, url)
	if err := bad.PutLease(ctx, "k", lock.Lease{Owner: "o", ExpiresAt: time.Now().Add(time.Minute)}); err == nil {
		t.Fatal("PutLease succeeded against nodes the system roots do not know")
	}
}
