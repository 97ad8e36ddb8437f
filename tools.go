//go:build tools

// Package tools pins modules that the packages use before they import them,
// so go.mod stays stable while several packages are written at once.
package tools

import (
	_ "github.com/alicebob/miniredis/v2"
	_ "github.com/caarlos0/env/v10"
	_ "github.com/redis/go-redis/v9"
	_ "k8s.io/api/apps/v1"
	_ "sigs.k8s.io/yaml"
)
