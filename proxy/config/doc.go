// Package config loads tracehop's YAML config strictly: unknown keys, wrong
// types and bad values are errors that name the file, the line, the key and
// what would be right, and every problem is reported at once. Values may use
// ${VAR} and ${VAR:-default} to read the environment.
//
// It only reads and checks; starting what the config describes is the
// proxy's job.
package config
