package lock

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// The reasons the Redis store counts are the RedisErr constants, all of
// them in ErrorReasons(BackendRedis), and it counts no other: every
// LockErrors label it passes is one of them or redisReason's, which returns
// only them.
func TestRedisErrorReasonsAreTheListed(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "redis.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		if vs, ok := n.(*ast.ValueSpec); ok {
			for i, name := range vs.Names {
				if strings.HasPrefix(name.Name, "RedisErr") && i < len(vs.Values) {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok {
						consts[name.Name], _ = strconv.Unquote(lit.Value)
					}
				}
			}
		}
		return true
	})
	listed := ErrorReasons(BackendRedis)
	for name, v := range consts {
		if !slices.Contains(listed, v) {
			t.Errorf("%s (%q) is not in ErrorReasons(redis)", name, v)
		}
	}
	if len(listed) != len(consts) {
		t.Errorf("ErrorReasons(redis) = %v, the RedisErr constants are %v", listed, consts)
	}
	if len(ErrorReasons(BackendMemory)) != 0 {
		t.Errorf("the memory store counts no error of its own, got %v", ErrorReasons(BackendMemory))
	}

	// Every LockErrors.WithLabelValues(backend, reason) call of the file.
	calls := 0
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "WithLabelValues" {
			return true
		}
		if inner, ok := sel.X.(*ast.SelectorExpr); !ok || inner.Sel.Name != "LockErrors" || len(call.Args) != 2 {
			return true
		}
		calls++
		switch a := call.Args[1].(type) {
		case *ast.Ident:
			if _, ok := consts[a.Name]; !ok {
				t.Errorf("LockErrors counted with %s, not a RedisErr constant", a.Name)
			}
		case *ast.CallExpr:
			if id, ok := a.Fun.(*ast.Ident); !ok || id.Name != "redisReason" {
				t.Errorf("LockErrors counted with a reason from %T", a.Fun)
			}
		default:
			t.Errorf("LockErrors counted with a %T reason", a)
		}
		return true
	})
	if calls == 0 {
		t.Error("no LockErrors count found in redis.go")
	}

	for _, e := range []error{
		context.DeadlineExceeded, &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, redis.ErrClosed,
		errors.New("dial tcp: connection refused"), redis.ErrPoolTimeout, context.Canceled,
	} {
		if r := redisReason(e); !slices.Contains(listed, r) {
			t.Errorf("redisReason(%v) = %q, not listed", e, r)
		}
	}
}
