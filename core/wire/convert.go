package wire

import (
	"net/netip"
	"time"

	"github.com/tracehop/tracehop/core"
)

// FillExportRequest packs spans into req, reusing req's backing arrays where
// they are large enough. Spans, tag strings and events of the whole batch
// share a few slabs, so a batch costs a handful of allocations rather than
// several per span.
func FillExportRequest(req *ExportRequest, batchID uint64, spans []core.Span) {
	req.BatchId = batchID
	var nTags, nEvents int
	for i := range spans {
		nTags += 2 * len(spans[i].Tags)
		nEvents += len(spans[i].Events)
	}
	slab := make([]Span, len(spans))
	endpoints := make([]Endpoint, 0, len(spans))
	tags := make([]string, 0, nTags)
	evTimes := make([]int64, 0, nEvents)
	evValues := make([]string, 0, nEvents)
	if cap(req.Spans) >= len(spans) {
		req.Spans = req.Spans[:len(spans)]
	} else {
		req.Spans = make([]*Span, len(spans))
	}
	for i := range spans {
		s := &spans[i]
		w := &slab[i]
		w.TraceIdHigh = s.TraceID.High
		w.TraceIdLow = s.TraceID.Low
		w.SpanId = uint64(s.SpanID)
		w.ParentId = uint64(s.ParentID)
		w.Name = s.Name
		w.Kind = SpanKind(s.Kind)
		w.LocalService = s.LocalService
		w.StartUnixNano = s.StartUnixNano
		w.DurationNano = int64(s.Duration)
		w.Flags = packFlags(s)
		if len(s.Tags) > 0 {
			start := len(tags)
			for _, t := range s.Tags {
				tags = append(tags, t.Key, t.Value)
			}
			w.Tags = tags[start:len(tags):len(tags)]
		}
		if len(s.Events) > 0 {
			start := len(evTimes)
			for _, e := range s.Events {
				evTimes = append(evTimes, e.UnixNano)
				evValues = append(evValues, e.Value)
			}
			w.EventTimesUnixNano = evTimes[start:len(evTimes):len(evTimes)]
			w.EventValues = evValues[start:len(evValues):len(evValues)]
		}
		if !s.Remote.IsZero() {
			endpoints = append(endpoints, Endpoint{Service: s.Remote.Service, Port: uint32(s.Remote.Port)})
			ep := &endpoints[len(endpoints)-1]
			if s.Remote.IP.IsValid() {
				ep.Ip = s.Remote.IP.Unmap().AsSlice()
			}
			w.Remote = ep
		}
		req.Spans[i] = w
	}
}

func packFlags(s *core.Span) uint32 {
	var f uint32
	if s.Error {
		f |= uint32(SpanFlag_SPAN_FLAG_ERROR)
	}
	if s.Sampled {
		f |= uint32(SpanFlag_SPAN_FLAG_SAMPLED)
	}
	if s.Debug {
		f |= uint32(SpanFlag_SPAN_FLAG_DEBUG)
	}
	if s.Shared {
		f |= uint32(SpanFlag_SPAN_FLAG_SHARED)
	}
	return f
}

// AppendSpans converts wire spans to core spans, appends them to dst and
// sanitizes each one (see core.Span.Sanitize), so a driver never sees a
// negative duration or a missing start however the host behaved.
func AppendSpans(dst []core.Span, ws []*Span, now func() time.Time) []core.Span {
	var nTags, nEvents int
	for _, w := range ws {
		nTags += len(w.Tags) / 2
		nEvents += len(w.EventValues)
	}
	tags := make([]core.Tag, 0, nTags)
	events := make([]core.Event, 0, nEvents)
	for _, w := range ws {
		s := core.Span{
			TraceID:       core.TraceID{High: w.TraceIdHigh, Low: w.TraceIdLow},
			SpanID:        core.SpanID(w.SpanId),
			ParentID:      core.SpanID(w.ParentId),
			Name:          w.Name,
			Kind:          core.Kind(w.Kind),
			LocalService:  w.LocalService,
			StartUnixNano: w.StartUnixNano,
			Duration:      time.Duration(w.DurationNano),
			Error:         w.Flags&uint32(SpanFlag_SPAN_FLAG_ERROR) != 0,
			Sampled:       w.Flags&uint32(SpanFlag_SPAN_FLAG_SAMPLED) != 0,
			Debug:         w.Flags&uint32(SpanFlag_SPAN_FLAG_DEBUG) != 0,
			Shared:        w.Flags&uint32(SpanFlag_SPAN_FLAG_SHARED) != 0,
		}
		if n := len(w.Tags) / 2; n > 0 {
			start := len(tags)
			for i := 0; i+1 < len(w.Tags); i += 2 {
				tags = append(tags, core.Tag{Key: w.Tags[i], Value: w.Tags[i+1]})
			}
			s.Tags = tags[start:len(tags):len(tags)]
		}
		if n := min(len(w.EventValues), len(w.EventTimesUnixNano)); n > 0 {
			start := len(events)
			for i := 0; i < n; i++ {
				events = append(events, core.Event{UnixNano: w.EventTimesUnixNano[i], Value: w.EventValues[i]})
			}
			s.Events = events[start:len(events):len(events)]
		}
		if r := w.Remote; r != nil {
			s.Remote.Service = r.Service
			s.Remote.Port = uint16(r.Port)
			if ip, ok := netip.AddrFromSlice(r.Ip); ok {
				s.Remote.IP = ip.Unmap()
			}
		}
		s.Sanitize(now)
		dst = append(dst, s)
	}
	return dst
}

// CapabilitiesToWire converts core capabilities to their wire message.
func CapabilitiesToWire(c core.Capabilities) *Capabilities {
	p := Precision_PRECISION_NANOSECOND
	switch {
	case c.Precision >= time.Millisecond:
		p = Precision_PRECISION_MILLISECOND
	case c.Precision >= time.Microsecond:
		p = Precision_PRECISION_MICROSECOND
	}
	return &Capabilities{Propagation: c.Propagation, TraceId_128Bit: c.TraceID128, Precision: p}
}

// CapabilitiesFromWire converts the wire message back; a nil message means a
// driver that declared nothing (nanosecond precision, 64-bit ids).
func CapabilitiesFromWire(w *Capabilities) core.Capabilities {
	if w == nil {
		return core.Capabilities{Precision: time.Nanosecond}
	}
	c := core.Capabilities{Propagation: w.Propagation, TraceID128: w.TraceId_128Bit, Precision: time.Nanosecond}
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
