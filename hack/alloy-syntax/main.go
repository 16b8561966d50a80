// Command alloy-syntax parses one Alloy configuration file with the parser of Grafana Alloy
// (github.com/grafana/alloy/syntax, the module `alloy fmt` and `alloy run` parse with) and
// prints its top-level blocks as JSON, e.g. [{"name": "loki.write", "label": "default"}], or
// with -fmt the file as `alloy fmt` prints it. A syntax error is printed to stderr
// (file:line:col: message) with exit status 1. It knows no Alloy component: their arguments
// and references are checked by Alloy itself (`alloy validate`), not here.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/grafana/alloy/syntax/ast"
	"github.com/grafana/alloy/syntax/parser"
	"github.com/grafana/alloy/syntax/printer"
)

type block struct {
	Name  string `json:"name"`
	Label string `json:"label"`
}

func main() {
	format := flag.Bool("fmt", false, "print the file as `alloy fmt` does instead of its blocks")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: alloy-syntax [-fmt] FILE")
		os.Exit(2)
	}
	src, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fail(err)
	}
	file, err := parser.ParseFile(flag.Arg(0), src)
	if err != nil {
		fail(err)
	}
	if *format { // what `alloy fmt` does: the printer, then a final newline
		if err := printer.Fprint(os.Stdout, file); err != nil {
			fail(err)
		}
		fmt.Println()
		return
	}
	blocks := []block{}
	for _, stmt := range file.Body {
		if b, ok := stmt.(*ast.BlockStmt); ok {
			blocks = append(blocks, block{Name: b.GetBlockName(), Label: b.Label})
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(blocks); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
