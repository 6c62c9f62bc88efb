// Package drivertest is tracehop's conformance kit for drivers. A driver's
// test calls Run with a constructor, a way to start a fresh back end (or a
// receiver that decodes the back end's real wire format) and read back what
// reached it, and the import path of the driver's main package.
//
// Run checks, first with the driver in process and then through a real
// plugin process launched by tracehop's host: invalid configs are refused
// naming the key; a canonical three-service trace (128-bit ids, an error
// span, unicode tags, events, remote endpoints) arrives with ids, parents,
// kinds, times (to the precision the driver declares) and tags intact;
// Shutdown flushes, is idempotent and is safe without Configure; Export is
// safe for concurrent use; a burst of 10,000 spans in batches of 512 loses
// nothing; Export after Shutdown fails cleanly; where the back end keeps it
// (OTLP's span flags), whether a parent is remote arrives as the host said
// (Backend.ParentOrigin); stopping tracehop's pipeline
// while the back end holds its answer to a stored batch stores each span
// once (Backend.AnswerLate).
package drivertest
