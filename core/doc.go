// Package core holds tracehop's domain: the finished-span model that every
// part of tracehop agrees on, and the Driver interface that every tracer back
// end implements.
//
// It is deliberately small and has no dependencies beyond the standard
// library. The pieces that move spans live in sub-packages: the span
// pipeline (pipeline), the plugin host that runs drivers out of process
// (plugin) and the generated wire protocol between the two (wire). Core is
// not the place for HTTP handling (see proxy) or for any vendor library (see
// drivers).
package core
