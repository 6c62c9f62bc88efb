package driverpb

import (
	"time"

	"github.com/tracehop/tracehop/core"
)

// CapabilitiesToWire converts core capabilities to their wire message.
func CapabilitiesToWire(c core.Capabilities) *Capabilities {
	p := Precision_PRECISION_NANOSECOND
	switch {
	case c.Precision >= time.Millisecond:
		p = Precision_PRECISION_MILLISECOND
	case c.Precision >= time.Microsecond:
		p = Precision_PRECISION_MICROSECOND
	}
	return &Capabilities{Propagation: c.Propagation, TraceId_128Bit: c.TraceID128, Precision: p, SharedSpans: c.SharedSpans, SecretKeys: c.SecretKeys}
}

// CapabilitiesFromWire converts the wire message back; a nil message means a
// driver that declared nothing (nanosecond precision, 64-bit ids).
func CapabilitiesFromWire(w *Capabilities) core.Capabilities {
	if w == nil {
		return core.Capabilities{Precision: time.Nanosecond}
	}
	c := core.Capabilities{Propagation: w.Propagation, TraceID128: w.TraceId_128Bit, Precision: time.Nanosecond, SharedSpans: w.SharedSpans, SecretKeys: w.SecretKeys}
	switch w.Precision {
	case Precision_PRECISION_MICROSECOND:
		c.Precision = time.Microsecond
	case Precision_PRECISION_MILLISECOND:
		c.Precision = time.Millisecond
	}
	return c
}

// HostInfoToWire converts host information to its wire message.
func HostInfoToWire(h core.HostInfo) *HostInfo {
	return &HostInfo{Version: h.Version, DriverName: h.DriverName, NodeId: h.NodeID, Service: h.Service, Zone: h.Zone}
}

// HostInfoFromWire converts the wire message back.
func HostInfoFromWire(w *HostInfo) core.HostInfo {
	if w == nil {
		return core.HostInfo{}
	}
	return core.HostInfo{Version: w.Version, DriverName: w.DriverName, NodeID: w.NodeId, Service: w.Service, Zone: w.Zone}
}
