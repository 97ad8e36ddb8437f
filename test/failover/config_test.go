package failover_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/composio-guard/composio-guard/internal/testproc"
)

// TestCheckConfigRedisURLs runs the binary's -check-config on each
// topology's URL: a valid one is printed with every password masked and its
// topology named; a bad one is refused naming GUARD_REDIS_URL, never
// quoting a password.
func TestCheckConfigRedisURLs(t *testing.T) {
	bin := testproc.Build(t, "./cmd/proxy")
	const data, sentinel = "Data-Pa55word", "Sentinel-Pa55word"
	for _, tc := range []struct {
		name, url string
		ok        bool
		want      []string
	}{
		{"one node, TLS, ACL", "rediss://guard:" + data + "@redis.internal:6380/2", true,
			[]string{"GUARD_REDIS_URL=rediss://guard:xxxxx@redis.internal:6380/2", "one Redis endpoint over TLS: redis.internal:6380"}},
		{"sentinel", "redis+sentinel://guard:" + data + "@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/mymaster/0?sentinel_password=" + sentinel, true,
			[]string{"GUARD_REDIS_URL=redis+sentinel://guard:xxxxx@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/mymaster/0?sentinel_password=xxxxx",
				`Redis Sentinel: master "mymaster" through 3 sentinel(s)`, "min replicas 1"}},
		{"cluster", "rediss+cluster://:" + data + "@10.0.1.1:7000,10.0.1.2:7000", true,
			[]string{"GUARD_REDIS_URL=rediss+cluster://:xxxxx@10.0.1.1:7000,10.0.1.2:7000", "Redis Cluster over TLS: 2 seed node(s)"}},
		{"sentinel without master", "redis+sentinel://:" + data + "@10.0.0.1:26379?sentinel_password=" + sentinel, false,
			[]string{"GUARD_REDIS_URL", "names the master"}},
		{"unescaped slash in a password", "redis://:pa/" + data + "@h:6379", false,
			[]string{"GUARD_REDIS_URL", "not host:port"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "-check-config")
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
				"GUARD_UPSTREAM_URL=http://127.0.0.1:9", "GUARD_LOCK_BACKEND=redis", "GUARD_REDIS_URL=" + tc.url,
				"GUARD_REDIS_MIN_REPLICAS=1"}
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatalf("run: %v", err)
			}
			if (err == nil) != tc.ok {
				t.Fatalf("exit error %v, want ok=%v:\n%s", err, tc.ok, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, secret := range []string{data, sentinel} {
				if strings.Contains(string(out), secret) {
					t.Errorf("output leaks a password:\n%s", out)
				}
			}
		})
	}
}
