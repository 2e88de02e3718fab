// Package oracle answers machine-config questions with Talos's own machinery module.
//
// One process reads a batch of JSON cases (one per line) on stdin and writes one JSON answer per
// line on stdout, in order, so that pytest pays the process start-up once per Talos minor.
// The same source is built against each machinery release by the modules beside this one.
package oracle

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// Case is one question. Op selects the handler; the other fields are the handler's inputs.
type Case struct {
	ID       string          `json:"id"`
	Op       string          `json:"op"`
	Contract string          `json:"contract,omitempty"`
	Config   string          `json:"config,omitempty"`
	Patches  []string        `json:"patches,omitempty"`
	Gen      *GenInput       `json:"gen,omitempty"`
	Validate *ValidateInput  `json:"validate,omitempty"`
	Extra    json.RawMessage `json:"extra,omitempty"`
}

// Answer is what a handler found. Error holds the oracle's own rejection of the input (a real
// verdict, compared by the tests), never a failure of the harness.
type Answer struct {
	ID       string   `json:"id"`
	Config   string   `json:"config,omitempty"`
	Secrets  string   `json:"secrets,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	Errors   []string `json:"errors,omitempty"`
	Error    string   `json:"error,omitempty"`
}

type handler func(*Case) (*Answer, error)

var handlers = map[string]handler{}

func register(op string, h handler) { handlers[op] = h }

// Main runs the batch loop; the per-minor modules call it from their main package.
func Main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println(machineryVersion())

		return
	}

	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "oracle:", err)
		os.Exit(1)
	}
}

func machineryVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}

	for _, dep := range info.Deps {
		if dep.Path == "github.com/siderolabs/talos/pkg/machinery" {
			return dep.Version
		}
	}

	return "unknown"
}

func run(in io.Reader, out io.Writer) error {
	scanner := bufio.NewScanner(in)
	scanner.Buffer(make([]byte, 1<<20), 64<<20)

	w := bufio.NewWriter(out)
	defer w.Flush() //nolint:errcheck
	enc := json.NewEncoder(w)

	for scanner.Scan() {
		line := scanner.Bytes()
		if len(line) == 0 {
			continue
		}

		var c Case
		if err := json.Unmarshal(line, &c); err != nil {
			return fmt.Errorf("bad case %q: %w", truncate(string(line)), err)
		}

		h, ok := handlers[c.Op]
		if !ok {
			return fmt.Errorf("case %s: unknown op %q", c.ID, c.Op)
		}

		a, err := h(&c)
		if err != nil {
			a = &Answer{Error: err.Error()}
		}

		a.ID = c.ID

		if err := enc.Encode(a); err != nil {
			return err
		}
	}

	return scanner.Err()
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}

	return s
}
