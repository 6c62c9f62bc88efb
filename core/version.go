package core

// Version is tracehop's version, stamped at build time (make build, make
// release: -X github.com/tracehop/tracehop/core.Version=...). The host and
// every driver built from the same tree carry the same one, so that
// `tracehop version -drivers` can tell a driver built from another tracehop.
var Version = "dev"
