// Package pipeline moves finished spans from the proxy's request path to the
// drivers without ever making a request wait.
//
// Each driver gets a bounded queue of its own and one goroutine that cuts the
// queue into batches and exports them, retrying transient failures with
// backoff for a bounded time. A full queue drops the span and counts it: the
// request path never blocks and memory never grows past the queues. One slow
// driver only ever fills its own queue.
//
// It is not the place for span creation or sampling (the proxy does those)
// nor for talking to driver processes (core/driverhost does).
package pipeline
