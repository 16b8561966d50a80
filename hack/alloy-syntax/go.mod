// Wrapper module that pins the parser of Grafana Alloy's configuration language
// (github.com/grafana/alloy/syntax, a module of its own in the Alloy repository): main.go parses
// the Alloy configuration of charts/aiops-monitoring. Alloy itself does not build from the Go
// module proxy here (see docs/monitoring.md, "Logs: Grafana Alloy"). Built by hack/tools-build.sh into the
// per-user cache.
module aiops-quality.io/hack/alloy-syntax

go 1.26.5

require github.com/grafana/alloy/syntax v0.1.1

require (
	github.com/fatih/color v1.19.0 // indirect
	github.com/mattn/go-colorable v0.1.15 // indirect
	github.com/mattn/go-isatty v0.0.22 // indirect
	golang.org/x/sys v0.46.0 // indirect
)
