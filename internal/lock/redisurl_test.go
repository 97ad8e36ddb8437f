package lock

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	dataPass     = "d4ta-pa55word"
	sentinelPass = "s3ntinel-pa55"
)

func TestParseRedisURLTopologies(t *testing.T) {
	t.Run("one node with ACL user", func(t *testing.T) {
		tg, err := parseRedisURL("rediss://guard:"+dataPass+"@redis.internal:6380/2?dial_timeout=2s", "")
		if err != nil {
			t.Fatal(err)
		}
		o := tg.single
		if tg.topology != TopologySingle || o == nil || o.Addr != "redis.internal:6380" || o.Username != "guard" ||
			o.Password != dataPass || o.DB != 2 || o.TLSConfig == nil || o.DialTimeout != 2*time.Second {
			t.Fatalf("got %+v", tg)
		}
	})
	t.Run("sentinel, separate credentials", func(t *testing.T) {
		raw := "redis+sentinel://guard:" + dataPass + "@10.0.0.1:26379,10.0.0.2:26379,[::1]:26380/mymaster/3" +
			"?sentinel_username=watch&sentinel_password=" + sentinelPass + "&pool_size=7"
		tg, err := parseRedisURL(raw, "")
		if err != nil {
			t.Fatal(err)
		}
		o := tg.failover
		if tg.topology != TopologySentinel || o == nil {
			t.Fatalf("got %+v", tg)
		}
		want := []string{"10.0.0.1:26379", "10.0.0.2:26379", "[::1]:26380"}
		if strings.Join(o.SentinelAddrs, " ") != strings.Join(want, " ") {
			t.Errorf("sentinels %v, want %v", o.SentinelAddrs, want)
		}
		if o.MasterName != "mymaster" || o.DB != 3 || o.PoolSize != 7 || o.TLSConfig != nil {
			t.Errorf("master %q db %d pool %d tls %v", o.MasterName, o.DB, o.PoolSize, o.TLSConfig)
		}
		if o.Username != "guard" || o.Password != dataPass {
			t.Errorf("data credentials %q/%q", o.Username, o.Password)
		}
		if o.SentinelUsername != "watch" || o.SentinelPassword != sentinelPass {
			t.Errorf("sentinel credentials %q/%q", o.SentinelUsername, o.SentinelPassword)
		}
	})
	t.Run("sentinel over TLS, db as a parameter", func(t *testing.T) {
		tg, err := parseRedisURL("rediss+sentinel://s1:26379,s2:26379/m?db=1", "")
		if err != nil {
			t.Fatal(err)
		}
		o := tg.failover
		if o.TLSConfig == nil || o.TLSConfig.ServerName != "" || o.DB != 1 || o.Username != "" || o.SentinelPassword != "" {
			t.Fatalf("got %+v (tls %+v)", o, o.TLSConfig)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		tg, err := parseRedisURL("rediss+cluster://guard:"+dataPass+"@n1:7000,n2:7001,n3:7002?read_timeout=1s", "")
		if err != nil {
			t.Fatal(err)
		}
		o := tg.cluster
		if tg.topology != TopologyCluster || o == nil || strings.Join(o.Addrs, ",") != "n1:7000,n2:7001,n3:7002" ||
			o.Username != "guard" || o.Password != dataPass || o.TLSConfig == nil || o.TLSConfig.ServerName != "" || o.ReadTimeout != time.Second {
			t.Fatalf("got %+v", o)
		}
	})
}

func TestParseRedisURLRefusals(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"http://:" + dataPass + "@h:6379", "scheme must be"},
		{"unix:///tmp/redis.sock", "scheme must be"},
		{"redis://:" + dataPass + "@h1:6379,h2:6379", "take one host"},
		{"redis://:" + dataPass + "@h:notaport/0", "port must be a number"},
		{"redis://:" + dataPass + "@:6379/0", "not host:port"},
		{"redis://:pa/" + dataPass + "@h:6379/0", "not host:port"}, // an unescaped / in the password
		{"redis://:" + dataPass + "@h:6379/notadb", "invalid database number"},
		{"redis://:" + dataPass + "@h:6379/0?no_such_option=1", "unexpected option"},
		{"redis+sentinel://:" + dataPass + "@s1:26379", "names the master"},
		{"redis+sentinel://s1:26379/m?sentinel_password=" + sentinelPass + "&password=" + dataPass, "password parameter is not read"},
		{"redis+sentinel://s1:26379/m/1?db=2&sentinel_password=" + sentinelPass, "database is given twice"},
		{"redis+sentinel://s1:26379/m/x?sentinel_password=" + sentinelPass, "invalid database number"},
		{"redis+sentinel://s1/m?sentinel_password=" + sentinelPass, "not host:port"},
		{"redis+cluster://:" + dataPass + "@n1:7000/2", "database 0 only"},
		{"redis+cluster://:" + dataPass + "@n1:7000?addr=n2:7001", "addr parameter"},
		{"redis+cluster://:" + dataPass + "@n1:7000?bogus=1", "unexpected option"},
		{"redis://:" + dataPass + "@h:6379/0#frag", "fragment"},
		{"redis://:" + dataPass + "@h:6379/0 ", "white space"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			_, err := parseRedisURL(tc.url, "")
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
			for _, secret := range []string{dataPass, sentinelPass, "pa/"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks a password: %v", err)
				}
			}
			if red := RedactURL(tc.url); strings.Contains(red, dataPass) || strings.Contains(red, sentinelPass) {
				t.Errorf("RedactURL(%q) = %q leaks a password", tc.url, red)
			}
		})
	}
}

func TestRedisCAFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := parseRedisURL("rediss://h:6380", bad); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a CA file without certificates: %v", err)
	}
	if _, err := parseRedisURL("rediss://h:6380", filepath.Join(dir, "missing.pem")); err == nil || !strings.Contains(err.Error(), "REDIS_CA_FILE") {
		t.Errorf("a missing CA file: %v", err)
	}
	if _, err := parseRedisURL("redis://h:6379", bad); err == nil || !strings.Contains(err.Error(), "not TLS") {
		t.Errorf("a CA file with a plain URL: %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"redis://h:6379/0", "redis://h:6379/0"},
		{"rediss://guard:" + dataPass + "@h:6380/1", "rediss://guard:xxxxx@h:6380/1"},
		{"redis://" + dataPass + "@h:6379", "redis://xxxxx@h:6379"},
		{"redis+sentinel://guard:" + dataPass + "@s1:26379,[::1]:26380/m/0?sentinel_username=w&sentinel_password=" + sentinelPass + "&pool_size=3",
			"redis+sentinel://guard:xxxxx@s1:26379,[::1]:26380/m/0?sentinel_username=w&sentinel_password=xxxxx&pool_size=3"},
		{"redis+cluster://:" + dataPass + "@n1:7000,n2:7001", "redis+cluster://:xxxxx@n1:7000,n2:7001"},
		{"redis://:pa/" + dataPass + "@h:6379", "xxxxx"}, // does not split cleanly: masked whole
		{"not a url " + dataPass, "xxxxx"},
	} {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSettingsValidateRedis(t *testing.T) {
	base := func() Settings {
		s := DefaultSettings()
		s.Backend = BackendRedis
		s.RedisURL = "redis+sentinel://:" + dataPass + "@s1:26379/m?sentinel_password=" + sentinelPass
		return s
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("valid sentinel settings: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Settings)
		want string
	}{
		{"negative replicas", func(s *Settings) { s.RedisMinReplicas = -1 }, "REDIS_MIN_REPLICAS"},
		{"too many replicas", func(s *Settings) { s.RedisMinReplicas = 17 }, "REDIS_MIN_REPLICAS"},
		{"brace in prefix", func(s *Settings) { s.RedisKeyPrefix = "guard{x}:" }, "REDIS_KEY_PREFIX"},
		{"bad sentinel URL", func(s *Settings) { s.RedisURL += "&password=" + dataPass }, "REDIS_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.mod(&s)
			err := s.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want a problem with %s", err, tc.want)
			}
			if strings.Contains(err.Error(), dataPass) || strings.Contains(err.Error(), sentinelPass) {
				t.Fatalf("Validate leaks a password: %v", err)
			}
		})
	}
}

func TestKeysShareAHashSlot(t *testing.T) {
	r := &Redis{prefix: "composio-guard:"}
	for _, key := range []string{
		Key("ac_1", "user", "PRIVATE"),
		Key("}weird{", "user", "PRIVATE"), // braces from a caller's id
		Key("%7D", "user", "PRIVATE"),
		"toolkit:gmail:abc:SHARED",
	} {
		lk := r.lockKey(key)
		for _, owner := range []string{"", "0123456789abcdef01234567", "}{"} {
			ls := r.leaseKey(key, owner)
			if tagOf(lk) == "" || tagOf(lk) != tagOf(ls) {
				t.Errorf("key %q: lock %q (tag %q) and lease %q (tag %q) do not share a hash tag", key, lk, tagOf(lk), ls, tagOf(ls))
			}
		}
	}
	if r.lockKey(Key("}weird{", "u", "P")) == r.lockKey(Key("%7Dweird%7B", "u", "P")) {
		t.Error("escaping made two keys one")
	}
}

// tagOf is Redis Cluster's hash tag rule: the text between the first { and
// the first } after it, when not empty.
func tagOf(k string) string {
	i := strings.IndexByte(k, '{')
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(k[i+1:], '}')
	if j <= 0 {
		return ""
	}
	return k[i+1 : i+1+j]
}
