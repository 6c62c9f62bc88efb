// Package drivertest is tracehop's conformance kit for drivers. A driver's
// test calls Run with a constructor, a way to start a fresh back end (or a
// receiver that decodes the back end's real wire format) and read back what
// reached it, and the import path of the driver's main package.
//
// Run first checks that the Suite and its Backend give what every check
// needs (all missing fields at once). Then it checks, with the driver in
// process and again through a real plugin process launched by tracehop's
// host:
//   - invalid configs are refused naming the key;
//   - a canonical three-service trace (128-bit ids, an error span, unicode,
//     empty, 4 KB and invalid UTF-8 tags, events, IPv4 and IPv6 endpoints)
//     arrives once, with ids, parents, kinds, times (to the precision the
//     driver declares) and tags intact; a span missing under its id but
//     present under another is named (a byte-order bug says so); with
//     Backend.TraceIDs, ids match the W3C strings; with Backend.Problems,
//     nothing the wire format shows wrong (a root's parent id of zeros);
//     with Backend.Sampled, the sampled flag; with Backend.ParentOrigin,
//     whether a parent is remote;
//   - Shutdown flushes, is idempotent and is safe without Configure;
//     Export after Shutdown fails cleanly;
//   - Export is safe for concurrent use; a burst in batches of tracehop's
//     default size (1,024) and of MaxBurstBatch loses nothing and stores
//     nothing twice;
//   - failures (Backend.Fail): down, overloaded (503 / UNAVAILABLE),
//     throttled (429 / RESOURCE_EXHAUSTED) and slow are retryable, refusing
//     (400 / INVALID_ARGUMENT) is Permanent; Export returns within 250 ms of
//     its context's deadline; the retried batch arrives whole;
//   - stopping tracehop's pipeline while the back end holds its answer to a
//     stored batch stores each span once (Backend.AnswerLate).
//   - through the plugin process, a driver killed between two batches is
//     started and configured again by the host, and the next batch
//     arrives (CrashRestart).
//
// The checks are one list (CheckNames), run two ways: by Run, as subtests
// of a Go test, in process and through the plugin process it builds from
// MainPackage; and by Check, on any driver executable in any language
// through tracehop's host, each check's outcome recorded in a Report
// instead of failing a test: `tracehop driver check PATH` is Check against
// the reference receivers (otlpreceiver, zipkinreceiver), which, as every
// Backend, take a T (a *testing.T, or Check's recorder).
//
// The kit's own tests run each check against a driver with the bug it must
// catch (internal/mutant) and expect it to fail.
package drivertest
