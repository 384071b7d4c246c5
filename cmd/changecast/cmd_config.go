package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/changecast/changecast/schema/config"
	"github.com/changecast/changecast/schema/wire"
)

func cmdConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: changecast config validate -c FILE | changecast config schema")
		return 2
	}
	switch args[0] {
	case "schema":
		b, err := config.JSONSchema()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintln(stdout, string(b))
		return 0
	case "validate":
		fs := flag.NewFlagSet("config validate", flag.ContinueOnError)
		fs.SetOutput(stderr)
		path := fs.String("c", "", "config file")
		if err := fs.Parse(args[1:]); err != nil || *path == "" {
			fmt.Fprintln(stderr, "usage: changecast config validate -c FILE")
			return 2
		}
		if _, err := loadConfig(*path, stderr); err != nil {
			return 2
		}
		fmt.Fprintf(stdout, "%s: valid\n", *path)
		return 0
	}
	fmt.Fprintf(stderr, "changecast config: unknown subcommand %q\n", args[0])
	return 2
}

// loadConfig loads a config file and prints each problem on its own line.
func loadConfig(path string, stderr io.Writer) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		var joined interface{ Unwrap() []error }
		if errors.As(err, &joined) {
			for _, e := range joined.Unwrap() {
				fmt.Fprintf(stderr, "%s: %v\n", path, e)
			}
		} else {
			fmt.Fprintf(stderr, "%s: %v\n", path, err)
		}
		return nil, err
	}
	return cfg, nil
}

func cmdEnvelope(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || args[0] != "schema" {
		fmt.Fprintln(stderr, "usage: changecast envelope schema")
		return 2
	}
	b, err := wire.EnvelopeJSONSchema()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, string(b))
	return 0
}
