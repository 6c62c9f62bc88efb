package proxy_test

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/build"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The package's files stand on floors (doc.go, "Rooms"): a file uses only
// files below it, so that a request can be followed from the top down. Two
// files that use each other, directly or around a loop, break that.
func TestFilesUseOnlyFilesBelowThem(t *testing.T) {
	uses := fileUses(t, ".")
	for _, loop := range loops(uses) {
		var why []string
		for _, a := range loop {
			for _, b := range loop {
				if names := uses[a][b]; names != nil {
					slices.Sort(names)
					why = append(why, a+" -> "+b+" ("+strings.Join(names, ", ")+")")
				}
			}
		}
		slices.Sort(why)
		t.Errorf("these files use each other; move what the lower one needs down, or the code that needs both up:\n  %s", strings.Join(why, "\n  "))
	}
}

// fileUses type-checks the package's non-test files in dir and returns,
// for each file, the files whose package-level names (types, functions,
// methods, fields, variables, constants) it uses, with the names.
func fileUses(t *testing.T, dir string) map[string]map[string][]string {
	t.Helper()
	// Export data of every dependency, as the build made it.
	out, err := exec.Command("go", "list", "-export", "-deps", "-f", "{{.ImportPath}}={{.Export}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -export: %v", err)
	}
	exports := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if path, file, ok := strings.Cut(sc.Text(), "="); ok && file != "" {
			exports[path] = file
		}
	}
	fset := token.NewFileSet()
	names, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		// The files of this platform's build (reuseport_linux.go or
		// reuseport_other.go, not both).
		if ok, err := build.Default.MatchFile(dir, filepath.Base(name)); err != nil || !ok {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) { return os.Open(exports[path]) })
	info := &types.Info{Uses: map[*ast.Ident]types.Object{}}
	pkg, err := (&types.Config{Importer: imp}).Check("proxy", fset, files, info)
	if err != nil {
		t.Fatal(err)
	}
	uses := map[string]map[string][]string{}
	for id, obj := range info.Uses {
		if obj == nil || obj.Pkg() != pkg || !obj.Pos().IsValid() {
			continue
		}
		switch o := obj.(type) {
		case *types.Var:
			if !o.IsField() && o.Parent() != pkg.Scope() {
				continue // a local
			}
		case *types.Func, *types.TypeName, *types.Const:
			if o.Parent() != nil && o.Parent() != pkg.Scope() {
				continue
			}
		default:
			continue
		}
		a := filepath.Base(fset.Position(id.Pos()).Filename)
		b := filepath.Base(fset.Position(obj.Pos()).Filename)
		if a == b {
			continue
		}
		if uses[a] == nil {
			uses[a] = map[string][]string{}
		}
		if !slices.Contains(uses[a][b], obj.Name()) {
			uses[a][b] = append(uses[a][b], obj.Name())
		}
	}
	return uses
}

// loops returns the strongly connected components of the use graph that
// hold more than one file (Tarjan's algorithm).
func loops(uses map[string]map[string][]string) [][]string {
	index, low, on := map[string]int{}, map[string]int{}, map[string]bool{}
	var stack []string
	var out [][]string
	var visit func(v string)
	visit = func(v string) {
		index[v], low[v] = len(index), len(index)
		stack = append(stack, v)
		on[v] = true
		for w := range uses[v] {
			if _, seen := index[w]; !seen {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if on[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			var comp []string
			for {
				w := stack[len(stack)-1]
				stack, on[w] = stack[:len(stack)-1], false
				comp = append(comp, w)
				if w == v {
					break
				}
			}
			if len(comp) > 1 {
				out = append(out, comp)
			}
		}
	}
	for v := range uses {
		if _, seen := index[v]; !seen {
			visit(v)
		}
	}
	return out
}
