package lock

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Topology is the shape of the Redis deployment GUARD_REDIS_URL names, read
// from its scheme.
type Topology string

// Topologies.
const (
	TopologySingle   Topology = "single"   // redis://, rediss://: one endpoint (a node, or a managed service's primary endpoint)
	TopologySentinel Topology = "sentinel" // redis+sentinel://, rediss+sentinel://: a primary found through Sentinel
	TopologyCluster  Topology = "cluster"  // redis+cluster://, rediss+cluster://: Redis Cluster
)

// Query parameters of a Sentinel URL that the guard reads itself: the
// credentials of the sentinels, kept apart from the data nodes' (user info).
const (
	paramSentinelUser = "sentinel_username"
	paramSentinelPass = "sentinel_password"
)

// redisTarget is a parsed GUARD_REDIS_URL: exactly one of the option sets.
type redisTarget struct {
	topology Topology
	single   *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
}

// rawRedisURL is a GUARD_REDIS_URL split by hand: url.Parse refuses several
// hosts in one authority when one is an IPv6 literal, and quotes the whole
// URL (password included) in its errors.
type rawRedisURL struct {
	topology   Topology
	tls        bool
	user, pass string
	hasUser    bool
	hosts      []string
	path       string
	query      url.Values
}

// schemes maps every accepted scheme to its topology and TLS.
var schemes = map[string]struct {
	topology Topology
	tls      bool
}{
	"redis":           {TopologySingle, false},
	"rediss":          {TopologySingle, true},
	"redis+sentinel":  {TopologySentinel, false},
	"rediss+sentinel": {TopologySentinel, true},
	"redis+cluster":   {TopologyCluster, false},
	"rediss+cluster":  {TopologyCluster, true},
}

const schemeHelp = "scheme must be redis:// or rediss:// (one node, TLS), redis+sentinel:// or rediss+sentinel:// (Sentinel), redis+cluster:// or rediss+cluster:// (Cluster)"

// splitRedisURL splits raw into its parts. Its errors never quote raw.
func splitRedisURL(raw string) (*rawRedisURL, error) {
	if strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, errors.New("not a valid URL: it holds white space or a control character")
	}
	i := strings.Index(raw, "://")
	if i <= 0 {
		return nil, errors.New("not a valid URL: " + schemeHelp)
	}
	sch, ok := schemes[strings.ToLower(raw[:i])]
	if !ok {
		return nil, errors.New(schemeHelp)
	}
	u := &rawRedisURL{topology: sch.topology, tls: sch.tls}
	rest := raw[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if strings.Contains(tail, "#") {
		return nil, errors.New("a fragment (#) has no meaning in a Redis URL; percent-encode # in a password as %23")
	}
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		info := authority[:at]
		authority = authority[at+1:]
		user, pass, _ := strings.Cut(info, ":")
		var err1, err2 error
		u.user, err1 = url.PathUnescape(user)
		u.pass, err2 = url.PathUnescape(pass)
		if err1 != nil || err2 != nil {
			return nil, errors.New("the user info holds an invalid percent-escape")
		}
		u.hasUser = true
	}
	if authority == "" {
		return nil, errors.New("a host is required")
	}
	hosts := strings.Split(authority, ",")
	for n, h := range hosts {
		// Errors name the host by position: a password with an unescaped
		// / ? # or @ ends up here, and must not be quoted.
		which := "the host"
		if len(hosts) > 1 {
			which = fmt.Sprintf("host %d of %d", n+1, len(hosts))
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil && u.topology == TopologySingle {
			// One node: go-redis supplies the default port 6379.
			host, port, err = h, "6379", nil
			if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
				err = errors.New("bad port")
			}
			host = strings.Trim(host, "[]")
		}
		if err != nil || host == "" {
			return nil, fmt.Errorf("%s is not host:port (percent-encode / ? # @ in a password)", which)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("%s: the port must be a number from 1 to 65535", which)
		}
		u.hosts = append(u.hosts, net.JoinHostPort(host, port))
	}
	if u.topology == TopologySingle && len(u.hosts) != 1 {
		return nil, errors.New("redis:// and rediss:// take one host; several hosts are a Sentinel (redis+sentinel://) or a Cluster (redis+cluster://)")
	}
	path, query, _ := strings.Cut(tail, "?")
	var err error
	if u.path, err = url.PathUnescape(path); err != nil {
		return nil, errors.New("the path holds an invalid percent-escape")
	}
	if u.query, err = url.ParseQuery(query); err != nil {
		return nil, errors.New("the query is not valid (name=value pairs joined by &)")
	}
	return u, nil
}

// parseRedisURL reads GUARD_REDIS_URL into the options of its topology;
// caFile (GUARD_REDIS_CA_FILE), when set, holds the PEM certificates that
// verify the servers of a TLS URL. No error quotes a password.
func parseRedisURL(raw, caFile string) (*redisTarget, error) {
	t, err := parseRedisURLRaw(raw, caFile)
	if err != nil {
		return nil, scrub(err, raw)
	}
	return t, nil
}

func parseRedisURLRaw(raw, caFile string) (*redisTarget, error) {
	u, err := splitRedisURL(raw)
	if err != nil {
		return nil, err
	}
	t := &redisTarget{topology: u.topology}
	var tlsConf **tls.Config
	switch u.topology {
	case TopologySingle:
		// go-redis reads the single-node form itself (db, options, TLS);
		// url.Parse's own error quotes the URL: never wrap it.
		if _, err := url.Parse(raw); err != nil {
			return nil, errors.New("not a valid URL")
		}
		if t.single, err = redis.ParseURL(raw); err != nil {
			return nil, fmt.Errorf("rejected by the Redis client: %w", unwrapURLError(err))
		}
		tlsConf = &t.single.TLSConfig
	case TopologySentinel:
		if t.failover, err = failoverOptions(u); err != nil {
			return nil, err
		}
		tlsConf = &t.failover.TLSConfig
	case TopologyCluster:
		if t.cluster, err = clusterOptions(u); err != nil {
			return nil, err
		}
		tlsConf = &t.cluster.TLSConfig
	}
	if *tlsConf != nil && u.topology != TopologySingle {
		// Several hosts: each connection verifies the name it dialled
		// (go-redis would pin the first host's name for all of them).
		(*tlsConf).ServerName = ""
	}
	if caFile != "" {
		if *tlsConf == nil {
			return nil, errors.New("GUARD_REDIS_CA_FILE is set but the URL is not TLS: use rediss://, rediss+sentinel:// or rediss+cluster://")
		}
		pool, err := loadCA(caFile)
		if err != nil {
			return nil, err
		}
		(*tlsConf).RootCAs = pool
	}
	if *tlsConf != nil && (*tlsConf).MinVersion < tls.VersionTLS12 {
		(*tlsConf).MinVersion = tls.VersionTLS12
	}
	return t, nil
}

// failoverOptions reads redis+sentinel://[user:pass@]s1:26379,s2:26379/<master>[/<db>]
// ?sentinel_username=..&sentinel_password=..: the user info authenticates to
// the data nodes, the sentinel_* parameters to the sentinels. The other
// parameters are go-redis's failover options (dial_timeout, pool_size...).
func failoverOptions(u *rawRedisURL) (*redis.FailoverOptions, error) {
	parts := strings.FieldsFunc(u.path, func(r rune) bool { return r == '/' })
	if len(parts) == 0 || len(parts) > 2 {
		return nil, errors.New("a Sentinel URL names the master in its path: redis+sentinel://host:26379,.../<master>[/<db>]")
	}
	q := cloneValues(u.query)
	for _, k := range []string{"master_name", "addr", "username", "password"} {
		if q.Has(k) {
			return nil, fmt.Errorf("the %s parameter is not read here: the master is the path, the sentinels the hosts, the data nodes' credentials the user info", k)
		}
	}
	g := url.URL{Scheme: "redis", Host: u.hosts[0]}
	if u.tls {
		g.Scheme = "rediss"
	}
	su, sp := q.Get(paramSentinelUser), q.Get(paramSentinelPass)
	q.Del(paramSentinelUser)
	q.Del(paramSentinelPass)
	if su != "" || sp != "" {
		g.User = url.UserPassword(su, sp)
	}
	if len(parts) == 2 {
		if q.Has("db") {
			return nil, errors.New("the database is given twice (path and db parameter)")
		}
		q.Set("db", parts[1])
	}
	q.Set("master_name", parts[0])
	for _, h := range u.hosts[1:] {
		q.Add("addr", h)
	}
	if u.hasUser {
		q.Set("username", u.user)
		q.Set("password", u.pass)
	}
	g.RawQuery = q.Encode()
	o, err := redis.ParseFailoverURL(g.String())
	if err != nil {
		return nil, fmt.Errorf("rejected by the Redis client: %w", unwrapURLError(err))
	}
	return o, nil
}

// clusterOptions reads redis+cluster://[user:pass@]n1:7000,n2:7001[?options]:
// the hosts are seed nodes (the client learns the others), the options
// go-redis's cluster options.
func clusterOptions(u *rawRedisURL) (*redis.ClusterOptions, error) {
	if p := strings.Trim(u.path, "/"); p != "" && p != "0" {
		return nil, errors.New("a Cluster has database 0 only: give no path")
	}
	q := cloneValues(u.query)
	for _, k := range []string{"addr", "db"} {
		if q.Has(k) {
			return nil, fmt.Errorf("the %s parameter is not read here: the nodes are the hosts, and a Cluster has database 0 only", k)
		}
	}
	g := url.URL{Scheme: "redis", Host: u.hosts[0]}
	if u.tls {
		g.Scheme = "rediss"
	}
	if u.hasUser {
		g.User = url.UserPassword(u.user, u.pass)
	}
	for _, h := range u.hosts[1:] {
		q.Add("addr", h)
	}
	g.RawQuery = q.Encode()
	o, err := redis.ParseClusterURL(g.String())
	if err != nil {
		return nil, fmt.Errorf("rejected by the Redis client: %w", unwrapURLError(err))
	}
	return o, nil
}

func loadCA(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("REDIS_CA_FILE: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("REDIS_CA_FILE %s holds no PEM certificate", file)
	}
	return pool, nil
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// unwrapURLError drops url.Error's quoting of the URL, keeping its cause.
func unwrapURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// scrub makes sure no error about raw quotes one of its secrets, whatever
// the library below said: every password (data and sentinel) is masked.
func scrub(err error, raw string) error {
	msg := err.Error()
	clean := msg
	for _, s := range urlSecrets(raw) {
		if len(s) >= 3 {
			clean = strings.ReplaceAll(clean, s, "xxxxx")
		}
	}
	if clean == msg {
		return err
	}
	return errors.New(clean)
}

// urlSecrets lists the passwords of raw, raw and unescaped.
func urlSecrets(raw string) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		if u, err := url.PathUnescape(s); err == nil && u != s {
			out = append(out, u)
		}
		if u, err := url.QueryUnescape(s); err == nil && u != s {
			out = append(out, u)
		}
	}
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		add(raw)
		return out
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
		info := rest[:at]
		if _, p, ok := strings.Cut(info, ":"); ok {
			add(p)
		} else {
			add(info) // a lone user name may be a password
		}
	}
	if _, q, ok := strings.Cut(rest[end:], "?"); ok {
		for kv := range strings.SplitSeq(q, "&") {
			if k, v, ok := strings.Cut(kv, "="); ok && secretParam(k) {
				add(v)
			}
		}
	}
	return out
}

// secretParam tells a query parameter that carries a password.
func secretParam(k string) bool {
	if u, err := url.QueryUnescape(k); err == nil {
		k = u
	}
	k = strings.ToLower(k)
	return strings.Contains(k, "password") || strings.Contains(k, "secret") || strings.Contains(k, "token")
}

// RedactURL renders a GUARD_REDIS_URL safe to print: the user info's
// password is masked (a lone user name too: some put the password there),
// and so is every query parameter that carries one (sentinel_password).
// Several hosts and IPv6 literals are kept as written. A URL without a
// scheme is masked whole.
func RedactURL(raw string) string {
	if raw == "" {
		return ""
	}
	// A URL that does not split cleanly may hold its password anywhere
	// (an unescaped / or @ in it): masked whole.
	if _, err := splitRedisURL(raw); err != nil {
		return "xxxxx"
	}
	scheme, rest, _ := strings.Cut(raw, "://")
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		info, hosts := authority[:at], authority[at+1:]
		if user, _, hasPass := strings.Cut(info, ":"); hasPass {
			info = user + ":xxxxx"
		} else {
			info = "xxxxx"
		}
		authority = info + "@" + hosts
	}
	if frag := strings.Index(tail, "#"); frag >= 0 {
		tail = tail[:frag] + "#xxxxx"
	}
	if path, q, ok := strings.Cut(tail, "?"); ok {
		var b strings.Builder
		b.WriteString(path)
		b.WriteByte('?')
		frag := ""
		if i := strings.Index(q, "#"); i >= 0 {
			q, frag = q[:i], q[i:]
		}
		for i, kv := range strings.Split(q, "&") {
			if i > 0 {
				b.WriteByte('&')
			}
			if k, _, ok := strings.Cut(kv, "="); ok && secretParam(k) {
				kv = k + "=xxxxx"
			}
			b.WriteString(kv)
		}
		b.WriteString(frag)
		tail = b.String()
	}
	return scheme + "://" + authority + tail
}

// Describe names the topology and the endpoints of a GUARD_REDIS_URL, with
// no credential, for -check-config and the start-up line; "" when it does
// not parse.
func Describe(raw string) string {
	u, err := splitRedisURL(raw)
	if err != nil {
		return ""
	}
	tlsNote := ""
	if u.tls {
		tlsNote = " over TLS"
	}
	switch u.topology {
	case TopologySentinel:
		master, _, _ := strings.Cut(strings.Trim(u.path, "/"), "/")
		return fmt.Sprintf("Redis Sentinel%s: master %q through %d sentinel(s) %s", tlsNote, master, len(u.hosts), strings.Join(u.hosts, ","))
	case TopologyCluster:
		return fmt.Sprintf("Redis Cluster%s: %d seed node(s) %s", tlsNote, len(u.hosts), strings.Join(u.hosts, ","))
	}
	return fmt.Sprintf("one Redis endpoint%s: %s", tlsNote, u.hosts[0])
}
