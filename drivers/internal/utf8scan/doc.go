// Package utf8scan checks the strings of a span for UTF-8 a word at a
// time, for the drivers that must send valid UTF-8 (OTLP's protobuf
// strings, Zipkin's JSON and proto). A proxy span's forty-odd strings are
// short and almost always ASCII: utf8.ValidString on each (a call, two
// 4-byte loads per 8 bytes and a byte at a time for the tail) cost a
// driver about 100 instructions a string, several times what ORing their
// bytes together does.
//
// It is not a repair: what to do with invalid UTF-8 (U+FFFD, dropping a
// tag) is each encoding's choice, made where it writes.
package utf8scan
