// Package deploy holds the tests that check the deployment artefacts under
// deploy/ as CI sees them, without a container engine or a cluster: the
// Grafana dashboard and the alert rules only name metrics the binary exposes,
// the generated rule files are in sync with their source and pass promtool,
// the Dockerfile's build stage builds, both kustomize overlays render to
// objects that decode strictly and are hardened, and compose validates.
package deploy
