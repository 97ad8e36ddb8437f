package redistest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// MasterName is the name the sentinels of StartSentinel monitor.
const MasterName = "guardmaster"

// SentinelSet is a primary, its replicas and three sentinels on loopback.
type SentinelSet struct {
	t         testing.TB
	Primary   *Server // the primary at start; after a failover, see Master
	Replica   *Server // Replicas[0]
	Replicas  []*Server
	Sentinels []*Server

	dataPass, sentinelPass string
	tls                    bool
}

// SentinelOptions shape a SentinelSet; the zero value is one replica and
// sentinels that act within a few seconds.
type SentinelOptions struct {
	Replicas int // default 1
	// DataPassword is the primary's and replicas' requirepass (and
	// masterauth); SentinelPassword the sentinels' own. Separate on purpose.
	DataPassword, SentinelPassword string

	DownAfter       time.Duration // sentinel down-after-milliseconds; default 1s
	FailoverTimeout time.Duration // sentinel failover-timeout; default 3s

	// TLS, when set, puts every server on TLS too: replication and the
	// sentinels' links run over TLS, the sentinels hand out the primary's
	// TLS address, and URL is a rediss+sentinel:// URL of their TLS ports.
	// The plain ports stay, for the harness's own checks.
	TLS *TLSFiles
}

// StartSentinel runs a primary, its replicas and three sentinels (quorum
// 2), waits until the replicas are in sync and every sentinel knows them
// and the other sentinels.
func StartSentinel(t testing.TB, tm SentinelOptions) *SentinelSet {
	t.Helper()
	if tm.Replicas == 0 {
		tm.Replicas = 1
	}
	if tm.DownAfter == 0 {
		tm.DownAfter = time.Second
	}
	if tm.FailoverTimeout == 0 {
		tm.FailoverTimeout = 3 * time.Second
	}
	set := &SentinelSet{t: t, dataPass: tm.DataPassword, sentinelPass: tm.SentinelPassword, tls: tm.TLS != nil}
	node := Options{Password: tm.DataPassword, TLS: tm.TLS, TLSReplication: tm.TLS != nil}
	set.Primary = StartWith(t, node)
	primaryPort := set.Primary.Port()
	if set.tls {
		primaryPort = set.Primary.tlsPort
	}
	for range tm.Replicas {
		replica := node
		replica.Args = []string{"--replicaof", "127.0.0.1", strconv.Itoa(primaryPort)}
		set.Replicas = append(set.Replicas, StartWith(t, replica))
	}
	set.Replica = set.Replicas[0]
	set.WaitInSync(set.Primary, tm.Replicas, 10*time.Second)
	conf := fmt.Sprintf("sentinel resolve-hostnames no\nsentinel monitor %s 127.0.0.1 %d 2\n"+
		"sentinel down-after-milliseconds %s %d\nsentinel failover-timeout %s %d\nsentinel parallel-syncs %s 1\n",
		MasterName, primaryPort, MasterName, tm.DownAfter.Milliseconds(), MasterName, tm.FailoverTimeout.Milliseconds(), MasterName)
	if tm.DataPassword != "" {
		conf += fmt.Sprintf("sentinel auth-pass %s %s\n", MasterName, tm.DataPassword)
	}
	for range 3 {
		set.Sentinels = append(set.Sentinels, StartWith(t, Options{Sentinel: conf, Password: tm.SentinelPassword,
			TLS: tm.TLS, TLSReplication: tm.TLS != nil}))
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range set.Sentinels {
		for {
			m, err := InfoAuth(s.Addr(), set.sentinelPass, "SENTINEL", "MASTER", MasterName)
			if err == nil && m["num-slaves"] == strconv.Itoa(tm.Replicas) && m["num-other-sentinels"] == "2" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: sentinel %s did not discover the replica and the other sentinels in 20s: %v %v", s.Addr(), m, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return set
}

// URL is the redis+sentinel:// URL of the set (database 0), or with TLS
// the rediss+sentinel:// URL of the sentinels' TLS ports.
func (set *SentinelSet) URL() string {
	addrs := make([]string, len(set.Sentinels))
	for i, s := range set.Sentinels {
		addrs[i] = s.Addr()
		if set.tls {
			addrs[i] = s.TLSAddr()
		}
	}
	scheme := "redis+sentinel://"
	if set.tls {
		scheme = "rediss+sentinel://"
	}
	return scheme + strings.Join(addrs, ",") + "/" + MasterName + "/0"
}

// Master asks a sentinel which address is the master now.
func (set *SentinelSet) Master() (string, error) {
	var lastErr error
	for _, s := range set.Sentinels {
		r, err := DoAuth(s.Addr(), set.sentinelPass, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MasterName)
		if err == nil && len(r) == 2 {
			return net.JoinHostPort(r[0], r[1]), nil
		}
		lastErr = fmt.Errorf("sentinel %s: %v %v", s.Addr(), r, err)
	}
	return "", lastErr
}

// Role is the ROLE of the server at addr: "master", "slave" or an error.
func Role(addr string) (string, error) {
	r, err := Do(addr, "ROLE")
	if err != nil || len(r) == 0 {
		return "", fmt.Errorf("ROLE %s: %v %v", addr, r, err)
	}
	return r[0], nil
}

// WaitInSync waits until primary reports n replicas online.
func (set *SentinelSet) WaitInSync(primary *Server, n int, within time.Duration) {
	set.t.Helper()
	if err := WaitReplicasAuth(primary.Addr(), set.dataPass, n, within); err != nil {
		set.t.Fatalf("redistest: %v", err)
	}
}

// WaitReplicas waits until the primary at addr reports n replicas online.
func WaitReplicas(addr string, n int, within time.Duration) error {
	return WaitReplicasAuth(addr, "", n, within)
}

// WaitReplicasAuth is WaitReplicas on a server with a password.
func WaitReplicasAuth(addr, pass string, n int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		info, err := InfoAuth(addr, pass, "INFO", "replication")
		online := 0
		for i := range n {
			if strings.Contains(info["slave"+strconv.Itoa(i)], "state=online") {
				online++
			}
		}
		if err == nil && info["role"] == "master" && online == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d replica(s) not online in %v: %v %v", addr, n, within, info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Cluster is a Redis Cluster of masters on loopback, no replicas.
type Cluster struct {
	Nodes []*Server
	tls   bool
}

// StartCluster runs n (>= 3) cluster-enabled nodes, joins them with
// `redis-cli --cluster create` and waits for cluster_state:ok on each.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return StartClusterWith(t, n, nil)
}

// StartClusterWith is StartCluster; with tls, every node also serves TLS
// and the cluster bus runs over TLS (tls-cluster), and URL is a
// rediss+cluster:// URL of the TLS ports.
func StartClusterWith(t testing.TB, n int, tls *TLSFiles) *Cluster {
	t.Helper()
	cli := Binary(t, "redis-cli")
	c := &Cluster{tls: tls != nil}
	args := []string{"--cluster", "create"}
	for range n {
		o := Options{Args: []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000"}, TLS: tls}
		if tls != nil {
			o.Args = append(o.Args, "--tls-cluster", "yes")
		}
		s := StartWith(t, o)
		c.Nodes = append(c.Nodes, s)
		if tls != nil {
			// The nodes meet on their TLS ports, so that the cluster bus
			// and the slot map use those.
			args = append(args, s.TLSAddr())
		} else {
			args = append(args, s.Addr())
		}
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if tls != nil {
		args = append(args, "--tls", "--cacert", tls.CA)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range c.Nodes {
		for {
			info, err := Info(s.Addr(), "CLUSTER", "INFO")
			if err == nil && info["cluster_state"] == "ok" && info["cluster_known_nodes"] == strconv.Itoa(n) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: cluster node %s not ok in 20s: %v %v", s.Addr(), info, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return c
}

// URL is the redis+cluster:// URL naming every node.
func (c *Cluster) URL() string {
	addrs := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		addrs[i] = s.Addr()
		if c.tls {
			addrs[i] = s.TLSAddr()
		}
	}
	if c.tls {
		return "rediss+cluster://" + strings.Join(addrs, ",")
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// Info runs a command that answers "key:value" lines (INFO, CLUSTER INFO)
// or a flat array of alternating names and values (SENTINEL MASTER) and
// returns them as a map.
func Info(addr string, args ...string) (map[string]string, error) {
	return InfoAuth(addr, "", args...)
}

// InfoAuth is Info on a server with a password.
func InfoAuth(addr, pass string, args ...string) (map[string]string, error) {
	r, err := DoAuth(addr, pass, args...)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	if len(r) == 1 {
		for line := range strings.SplitSeq(r[0], "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
				m[k] = v
			}
		}
		return m, nil
	}
	for i := 0; i+1 < len(r); i += 2 {
		m[r[i]] = r[i+1]
	}
	return m, nil
}

// Do sends one command in RESP and returns its answer flattened to strings
// (a bulk or simple string is one element, an array its elements, nested
// arrays flattened, integers in decimal). An error reply is an error.
func Do(addr string, args ...string) ([]string, error) { return DoAuth(addr, "", args...) }

// DoAuth is Do after AUTH pass, when pass is not empty.
func DoAuth(addr, pass string, args ...string) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(c)
	send := func(args ...string) ([]string, error) {
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		if _, err := c.Write([]byte(b.String())); err != nil {
			return nil, err
		}
		var out []string
		err := readReply(r, &out)
		return out, err
	}
	if pass != "" {
		if _, err := send("AUTH", pass); err != nil {
			return nil, err
		}
	}
	return send(args...)
}

func readReply(r *bufio.Reader, out *[]string) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return fmt.Errorf("empty reply line")
	}
	switch line[0] {
	case '+', ':':
		*out = append(*out, line[1:])
	case '-':
		return fmt.Errorf("redis error: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return err
		}
		if n < 0 {
			*out = append(*out, "")
			return nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		*out = append(*out, string(buf[:n]))
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return err
		}
		for range n {
			if err := readReply(r, out); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}
