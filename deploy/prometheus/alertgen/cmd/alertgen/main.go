// Command alertgen renders deploy/prometheus/alerts.src.yaml into the plain
// rules file and the PrometheusRule manifest (run through go generate).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/composio-guard/composio-guard/deploy/prometheus/alertgen"
)

func main() {
	src := flag.String("src", "", "the alert source (alerts.src.yaml)")
	rules := flag.String("rules", "", "where to write the plain rules file")
	operator := flag.String("operator", "", "where to write the PrometheusRule manifest")
	flag.Parse()
	if err := run(*src, *rules, *operator); err != nil {
		fmt.Fprintln(os.Stderr, "alertgen:", err)
		os.Exit(1)
	}
}

func run(src, rules, operator string) error {
	if src == "" || rules == "" || operator == "" {
		return fmt.Errorf("-src, -rules and -operator are required")
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read source: %w", err)
	}
	s, err := alertgen.Parse(data)
	if err != nil {
		return err
	}
	if err := os.WriteFile(rules, s.RulesFile(), 0o644); err != nil {
		return fmt.Errorf("write rules: %w", err)
	}
	if err := os.WriteFile(operator, s.PrometheusRule(), 0o644); err != nil {
		return fmt.Errorf("write PrometheusRule: %w", err)
	}
	return nil
}
