// Package file is the file driver: it appends each span as one line of
// Zipkin v2 JSON to a file (or standard output), so that any tool that reads
// Zipkin's JSON can read it and several tracehop processes can share one
// file. It is the driver of tracehop's default config and demo, and the
// SDK's worked example: start here to write a driver of your own.
//
// Config:
//
//	path: /var/log/tracehop/spans.jsonl   # required; "-" for standard output
//
// Zipkin's JSON keeps microseconds and lowercases span and service names.
package file
