package otlp

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tracehop/tracehop/sdk"
	"github.com/tracehop/tracehop/sdk/attrnames"
)

// Config is the otlp driver's config block. Every key is optional; a key
// left out takes its value from the standard OTEL_EXPORTER_OTLP_* variable
// when the driver's environment has it (pass it with the driver's pass_env),
// else its default.
type Config struct {
	// Endpoint is where spans go. For grpc, host:port (default
	// localhost:4317), or a URL whose scheme says whether to use TLS
	// (http:// means plaintext). For http/protobuf, a URL (default
	// http://localhost:4318/v1/traces); a URL without a path gets
	// /v1/traces. Env: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) or
	// OTEL_EXPORTER_OTLP_ENDPOINT (a base, /v1/traces appended for HTTP).
	Endpoint string `json:"endpoint"`
	// Protocol is grpc (the default, as the OTLP spec says) or
	// http/protobuf. Env: OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL.
	Protocol string `json:"protocol"`
	// Headers are sent with every export (API keys: x-honeycomb-team,
	// lightstep-access-token, ...); never logged. Env:
	// OTEL_EXPORTER_OTLP_[TRACES_]HEADERS (k=v,k2=v2, values URL-encoded).
	Headers map[string]sdk.Secret `json:"headers"`
	// Compression is gzip or none (default none, as the spec says; gzip
	// costs CPU per span and saves about 80% of the bytes). Env:
	// OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION.
	Compression string `json:"compression"`
	// Timeout bounds one export request (default 10s, the spec's).
	// Env: OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT (milliseconds).
	Timeout sdk.Duration `json:"timeout"`
	// TLS configures the connection's TLS.
	TLS TLSConfig `json:"tls"`
	// Resource holds literal resource attributes added to every span's
	// resource (deployment.environment.name: prod, ...). service.name
	// defaults to the span's local service (node.service), and
	// service.instance.id to node.id; a key here overrides either. Env:
	// OTEL_RESOURCE_ATTRIBUTES (k=v,...) and OTEL_SERVICE_NAME, below these.
	Resource map[string]string `json:"resource"`
	// AttributeNames is otel (the default: OpenTelemetry's stable HTTP
	// semantic conventions and span names), envoy (the proxy's tags as
	// the other drivers send them) or both.
	AttributeNames string `json:"attribute_names"`
}

// TLSConfig is the otlp driver's tls block.
type TLSConfig struct {
	// CAFile is a PEM bundle to verify the receiver's certificate with
	// (default: the system's roots). Env: OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE.
	CAFile string `json:"ca_file"`
	// CertFile and KeyFile are the client's own certificate and key, for
	// receivers that require mTLS. Env:
	// OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE and _CLIENT_KEY.
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
	// Insecure sends gRPC in plaintext to an endpoint given as host:port
	// (default false: TLS). An http:// or https:// endpoint says it
	// itself. Env: OTEL_EXPORTER_OTLP_[TRACES_]INSECURE.
	Insecure *bool `json:"insecure"`
	// ServerName overrides the name the receiver's certificate is checked
	// against (default: the endpoint's host).
	ServerName string `json:"server_name"`
}

// Defaults, as the OTLP exporter spec gives them.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
	DefaultGRPCEndpoint  = "localhost:4317"
	DefaultHTTPEndpoint  = "http://localhost:4318/v1/traces"
	DefaultTimeout       = 10 * time.Second
	tracesPath           = "/v1/traces"
)

// Validate reports every problem with the config at once. A key left out
// (empty) is not a problem: the environment or the default fills it, and
// Configure validates again after that.
func (c *Config) Validate() error {
	var p sdk.Problems
	switch c.Protocol {
	case "":
	case ProtocolGRPC:
		if c.Endpoint != "" && strings.Contains(c.Endpoint, "://") {
			if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				p.Add("endpoint", "must be host:port or an http(s) URL, got %q", c.Endpoint)
			}
		}
	case ProtocolHTTPProtobuf:
		if c.Endpoint != "" {
			if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				p.Add("endpoint", "must be an http or https URL such as http://127.0.0.1:4318/v1/traces, got %q", c.Endpoint)
			}
		}
	case "http/json":
		p.Add("protocol", "http/json is not supported; use http/protobuf (every OTLP receiver takes it) or grpc")
	default:
		p.Add("protocol", "must be grpc or http/protobuf, got %q", c.Protocol)
	}
	if c.Compression != "" && c.Compression != "gzip" && c.Compression != "none" {
		p.Add("compression", "must be gzip or none, got %q", c.Compression)
	}
	if c.Timeout < 0 {
		p.Add("timeout", "must be positive, got %s", time.Duration(c.Timeout))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		p.Add("tls", "cert_file and key_file go together (mTLS), got only one")
	}
	for k := range c.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			p.Add("headers", "%q is not a header name", k)
		}
	}
	for k := range c.Resource {
		if k == "" {
			p.Add("resource", "an attribute name must not be empty")
		}
	}
	if _, err := attrnames.Parse(c.AttributeNames, attrnames.OTel); err != nil {
		p.Add("attribute_names", "%v", err)
	}
	return p.Err()
}

// applyEnv fills what the config left out from the OTEL_EXPORTER_OTLP_*
// variables (the traces-specific one first), then the defaults. Config keys
// win over variables: the variables are how an operator configures every
// OpenTelemetry exporter of a host, the config is this driver's own word.
func (c *Config) applyEnv(getenv func(string) string) error {
	var p sdk.Problems
	env := func(name string) (string, string) {
		if v := getenv("OTEL_EXPORTER_OTLP_TRACES_" + name); v != "" {
			return v, "OTEL_EXPORTER_OTLP_TRACES_" + name
		}
		return getenv("OTEL_EXPORTER_OTLP_" + name), "OTEL_EXPORTER_OTLP_" + name
	}
	if c.Protocol == "" {
		c.Protocol, _ = env("PROTOCOL")
	}
	if c.Protocol == "" {
		c.Protocol = ProtocolGRPC
	}
	if c.Endpoint == "" {
		if v := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); v != "" {
			c.Endpoint = v
		} else if v := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); v != "" {
			c.Endpoint = v
			if c.Protocol == ProtocolHTTPProtobuf {
				c.Endpoint = strings.TrimSuffix(v, "/") + tracesPath
			}
		}
	}
	if c.Headers == nil {
		if v, name := env("HEADERS"); v != "" {
			c.Headers = map[string]sdk.Secret{}
			for kv := range strings.SplitSeq(v, ",") {
				k, val, ok := strings.Cut(kv, "=")
				k = strings.TrimSpace(k)
				uv, err := url.PathUnescape(strings.TrimSpace(val))
				if !ok || k == "" || err != nil {
					p.Add("headers", "%s: each entry must be key=value (URL-encoded), got an entry %q", name, k)
					continue
				}
				c.Headers[k] = sdk.Secret(uv)
			}
		}
	}
	if c.Compression == "" {
		c.Compression, _ = env("COMPRESSION")
	}
	if c.Compression == "" {
		c.Compression = "none"
	}
	if c.Timeout == 0 {
		if v, name := env("TIMEOUT"); v != "" {
			ms, err := strconv.Atoi(v)
			if err != nil || ms <= 0 {
				p.Add("timeout", "%s: must be a positive number of milliseconds, got %q", name, v)
			}
			c.Timeout = sdk.Duration(time.Duration(ms) * time.Millisecond)
		} else {
			c.Timeout = sdk.Duration(DefaultTimeout)
		}
	}
	if c.TLS.CAFile == "" {
		c.TLS.CAFile, _ = env("CERTIFICATE")
	}
	if c.TLS.CertFile == "" && c.TLS.KeyFile == "" {
		c.TLS.CertFile, _ = env("CLIENT_CERTIFICATE")
		c.TLS.KeyFile, _ = env("CLIENT_KEY")
	}
	if c.TLS.Insecure == nil {
		if v, name := env("INSECURE"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				p.Add("tls.insecure", "%s: must be true or false, got %q", name, v)
			}
			c.TLS.Insecure = &b
		}
	}
	if c.Endpoint == "" {
		c.Endpoint = DefaultGRPCEndpoint
		if c.Protocol == ProtocolHTTPProtobuf {
			c.Endpoint = DefaultHTTPEndpoint
		}
	} else if c.Protocol == ProtocolHTTPProtobuf {
		if u, err := url.Parse(c.Endpoint); err == nil && (u.Path == "" || u.Path == "/") {
			c.Endpoint = strings.TrimSuffix(c.Endpoint, "/") + tracesPath
		}
	}
	return p.Err()
}

// resource returns the literal resource attributes: OTEL_RESOURCE_ATTRIBUTES
// and OTEL_SERVICE_NAME under the config's resource block.
func (c *Config) resource(getenv func(string) string) (map[string]string, error) {
	out := map[string]string{}
	var p sdk.Problems
	if v := getenv("OTEL_RESOURCE_ATTRIBUTES"); v != "" {
		for kv := range strings.SplitSeq(v, ",") {
			k, val, ok := strings.Cut(kv, "=")
			uv, err := url.PathUnescape(strings.TrimSpace(val))
			if !ok || strings.TrimSpace(k) == "" || err != nil {
				p.Add("resource", "OTEL_RESOURCE_ATTRIBUTES: each entry must be key=value (URL-encoded), got %q", kv)
				continue
			}
			out[strings.TrimSpace(k)] = uv
		}
	}
	if v := getenv("OTEL_SERVICE_NAME"); v != "" {
		out["service.name"] = v
	}
	for k, v := range c.Resource {
		out[k] = v
	}
	return out, p.Err()
}

// String prints the config for logs, headers redacted.
func (c Config) String() string {
	return fmt.Sprintf("protocol=%s endpoint=%s compression=%s timeout=%s headers=%d", c.Protocol, c.Endpoint, c.Compression, time.Duration(c.Timeout), len(c.Headers))
}
