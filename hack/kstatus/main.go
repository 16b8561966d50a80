// Command kstatus reads one Kubernetes object as JSON on stdin and prints, as one JSON line, the
// status kstatus computes for it (status.Compute of sigs.k8s.io/cli-utils, the library Flux's
// health checks and kubectl-wait-style tools use):
//
//	{"status": "Current", "message": "Resource is Ready"}
//
// With --cel-file FILE, a Flux Kustomization holding spec.healthCheckExprs, it also prints what
// Flux decides from the entry for the object's group and kind ("cel"), the way Flux's
// kustomize-controller does (fluxcd/pkg runtime/cel, StatusEvaluator):
//   - a status.observedGeneration that differs from metadata.generation is InProgress;
//   - then inProgress, failed and current are evaluated in that order, the first true one wins;
//   - none true is InProgress;
//   - an expression that fails to evaluate (a field that does not exist, say) makes the status
//     Unknown: Flux keeps waiting and shows the error. Printed as "cel": "Unknown" and "celError".
//
// The CEL environment is the one Flux builds: expressions are parsed, not type-checked, and
// their variables are the object's top-level fields (metadata, spec, status, ...).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

// healthCheckExprs is one entry of a Flux Kustomization's spec.healthCheckExprs.
type healthCheckExprs struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	InProgress string `json:"inProgress"`
	Failed     string `json:"failed"`
	Current    string `json:"current"`
}

type result struct {
	Status   string `json:"status"`
	Message  string `json:"message"`
	CEL      string `json:"cel,omitempty"`
	CELError string `json:"celError,omitempty"`
}

func main() {
	celFile := flag.String("cel-file", "", "a Flux Kustomization whose spec.healthCheckExprs to apply too")
	flag.Parse()
	if err := run(*celFile); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(celFile string) error {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	// Unstructured JSON keeps integers as int64, as objects read from the API server have them.
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("reading the object on stdin: %w", err)
	}
	computed, err := status.Compute(obj)
	if err != nil {
		return fmt.Errorf("kstatus: %w", err)
	}
	out := result{Status: string(computed.Status), Message: computed.Message}
	if celFile != "" {
		exprs, err := loadExprs(celFile, obj.GroupVersionKind().GroupKind())
		if err != nil {
			return err
		}
		verdict, err := evaluate(exprs, obj)
		if err != nil {
			return err
		}
		out.CEL = string(verdict.Status)
		if verdict.Err != nil {
			out.CELError = verdict.Err.Error()
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

// loadExprs returns the healthCheckExprs entry of the Kustomization in path for the group and
// kind (Flux matches on these, not on the version).
func loadExprs(path string, gk schema.GroupKind) (*healthCheckExprs, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var kustomization struct {
		Spec struct {
			HealthCheckExprs []healthCheckExprs `json:"healthCheckExprs"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &kustomization); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, e := range kustomization.Spec.HealthCheckExprs {
		if schema.FromAPIVersionAndKind(e.APIVersion, e.Kind).GroupKind() == gk {
			return &kustomization.Spec.HealthCheckExprs[i], nil
		}
	}
	return nil, fmt.Errorf("%s: no spec.healthCheckExprs entry for %s", path, gk)
}

type verdict struct {
	Status status.Status
	Err    error // why the status is Unknown
}

// evaluate applies the expressions as Flux does. An expression that does not parse is an error
// (Flux refuses the Kustomization); one that fails to evaluate makes the status Unknown.
func evaluate(exprs *healthCheckExprs, obj *unstructured.Unstructured) (verdict, error) {
	if exprs.Current == "" {
		return verdict{}, fmt.Errorf("healthCheckExprs for %s: current is required", exprs.Kind)
	}
	steps := []struct {
		name, expr string
		status     status.Status
	}{
		{"inProgress", exprs.InProgress, status.InProgressStatus},
		{"failed", exprs.Failed, status.FailedStatus},
		{"current", exprs.Current, status.CurrentStatus},
	}
	programs := make([]cel.Program, len(steps))
	for i, step := range steps {
		if step.expr == "" {
			continue
		}
		program, err := compile(step.expr)
		if err != nil {
			return verdict{}, fmt.Errorf("healthCheckExprs %s: %w", step.name, err)
		}
		programs[i] = program
	}

	content := obj.UnstructuredContent()
	observed, found, err := unstructured.NestedInt64(content, "status", "observedGeneration")
	if err != nil {
		return verdict{status.UnknownStatus, err}, nil
	}
	if found {
		generation, found, err := unstructured.NestedInt64(content, "metadata", "generation")
		if err != nil {
			return verdict{status.UnknownStatus, err}, nil
		}
		if found && observed != generation {
			return verdict{Status: status.InProgressStatus}, nil
		}
	}
	for i, step := range steps {
		if programs[i] == nil {
			continue
		}
		val, _, err := programs[i].ContextEval(context.Background(), content)
		if err != nil {
			return verdict{status.UnknownStatus, fmt.Errorf("%s: %w", step.name, err)}, nil
		}
		isTrue, ok := val.(types.Bool)
		if !ok {
			return verdict{status.UnknownStatus, fmt.Errorf("%s: not a boolean: %v", step.name, val)}, nil
		}
		if isTrue {
			return verdict{Status: step.status}, nil
		}
	}
	return verdict{Status: status.InProgressStatus}, nil
}

// compile parses expr in the CEL environment Flux uses (fluxcd/pkg runtime/cel NewExpression).
func compile(expr string) (cel.Program, error) {
	env, err := cel.NewEnv(
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Sets(),
		ext.Encoders(),
	)
	if err != nil {
		return nil, err
	}
	ast, issues := env.Parse(expr)
	if issues != nil && issues.Err() != nil {
		return nil, issues.Err()
	}
	return env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.InterruptCheckFrequency(100))
}
