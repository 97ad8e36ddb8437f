// Package faults owns the upstream-fault suite: the proxy binary runs as a
// real process in front of a Composio that refuses connections, resets them
// mid-answer, answers late, answers garbage, rate-limits or fails in a storm.
// Each test asserts what the client sees and that nothing was created twice
// at the fake. Everything is in the tests; harness/ holds what the hardening
// suites share.
package faults
