package lock_test

import (
	"testing"

	"github.com/composio-guard/composio-guard/internal/lock"
	"github.com/composio-guard/composio-guard/internal/lock/locktest"
)

func TestMemoryContract(t *testing.T) {
	locktest.Run(t, func(*testing.T) lock.Store { return lock.NewMemory() })
}
