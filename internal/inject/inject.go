package inject

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	kyaml "sigs.k8s.io/yaml"
)

// Names the sidecar takes in a Pod; a Pod that has one of them already is
// refused rather than injected twice.
const (
	ContainerName    = "tracehop"
	ConfigVolumeName = "tracehop-config"
	TmpVolumeName    = "tracehop-tmp"
	// SkipAnnotation set to "disabled" on a Pod template leaves it as it
	// is (a front proxy, which is tracehop itself; a collector).
	SkipAnnotation = "tracehop.io/inject"
	// InjectedAnnotation marks an injected Pod template with the version
	// of tracehop that injected it.
	InjectedAnnotation = "tracehop.io/injected"
	// ConfigPath is where the sidecar reads its config: the ConfigMap's
	// key tracehop.yaml, mounted read-only.
	ConfigPath = "/etc/tracehop/tracehop.yaml"
)

// Port is one port the sidecar listens on.
type Port struct {
	Name   string // an IANA_SVC_NAME: at most 15 characters, lower case, digits and '-'
	Number int32
}

// Options say what sidecar to add. DefaultOptions fills every field.
type Options struct {
	Image string
	// ConfigMap holds the sidecar's config under the key tracehop.yaml;
	// "" means NAME-tracehop, NAME being the workload's name.
	ConfigMap string
	// AdminPort serves /ready, /healthz and /metrics (the config's admin
	// address must listen on it, on 0.0.0.0).
	AdminPort int32
	// Ports are the config's listeners (ingress, egress).
	Ports []Port
	// DrainTimeout is how long tracehop drains requests and flushes spans
	// after SIGTERM; the Pod's terminationGracePeriodSeconds is raised to
	// cover it and the preStop pause.
	DrainTimeout time.Duration
	// PreStopSeconds pause the sidecar before SIGTERM, so that the Pod's
	// endpoints are gone from Services before tracehop stops accepting
	// requests (and the application's last requests still go out through
	// the egress listener).
	PreStopSeconds int64
	// Resources are the sidecar's requests and limits.
	Resources corev1.ResourceRequirements
	// GOMAXPROCS, when above 0, is set in the sidecar's environment (its
	// driver runs 1 anyway: core/driverhost). Without a CPU limit Go would
	// run as many processors as the node has CPUs, which costs a sidecar
	// CPU per request for nothing at the rates a Pod sees
	// (docs/deploying.md).
	GOMAXPROCS int
	// Version goes into the InjectedAnnotation.
	Version string
}

// DefaultOptions returns the options `tracehop inject` starts from. The
// resources come from docs/deploying.md's measurements.
func DefaultOptions() Options {
	return Options{
		Image:          "localhost/tracehop:latest",
		AdminPort:      9901,
		Ports:          []Port{{"th-ingress", 8100}, {"th-egress", 9100}},
		DrainTimeout:   15 * time.Second,
		PreStopSeconds: 5,
		Resources: corev1.ResourceRequirements{
			// Measured (docs/deploying.md, make k8s-scale): a sidecar with its
			// driver holds 34 MiB idle, 43-47 MiB at 100 req/s, 54 at 500 and
			// 71 with its queue full; it uses 6% of a core at 100 req/s. No
			// CPU limit: throttling would stall every request through the Pod.
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
		},
		// Measured (docs/deploying.md): tracehop and its otlp driver at
		// 100 and 1,000 req/s spent 19-39% and 14-27% more CPU per request
		// with 2 processors than with 1, on 2 CPUs.
		GOMAXPROCS: 1,
		Version:    "dev",
	}
}

var portName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$`)

// ParsePorts parses NAME=PORT[,NAME=PORT...], as the -ports flag takes it.
func ParsePorts(s string) ([]Port, error) {
	var ports []Port
	for _, p := range strings.Split(s, ",") {
		name, num, ok := strings.Cut(strings.TrimSpace(p), "=")
		n, err := strconv.ParseInt(num, 10, 32)
		if !ok || err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%q: want NAME=PORT, the port between 1 and 65535 (for example th-ingress=8100)", p)
		}
		if !portName.MatchString(name) || !strings.ContainsAny(name, "abcdefghijklmnopqrstuvwxyz") {
			return nil, fmt.Errorf("%q: a port name has at most 15 characters, lower-case letters, digits and '-', and a letter", name)
		}
		ports = append(ports, Port{name, int32(n)})
	}
	return ports, nil
}

// Result says what Inject did to each document.
type Result struct {
	// Injected names each workload that got the sidecar ("Deployment
	// shop/service1"); Copied counts the documents passed through.
	Injected []string
	Copied   int
	// Notes are changes the user may want to know about (a grace period
	// raised, an annotation kept).
	Notes []string
}

// DocError is a document Inject refuses: where it is, what it is and why.
type DocError struct {
	Source string // the file name, or "stdin"
	Index  int    // 1-based
	Kind   string // "" when the document could not be read
	Name   string
	Err    error
}

func (e *DocError) Error() string {
	what := ""
	if e.Kind != "" {
		what = " (" + e.Kind + " " + e.Name + ")"
	}
	return fmt.Sprintf("%s: document %d%s: %v", e.Source, e.Index, what, e.Err)
}

func (e *DocError) Unwrap() error { return e.Err }

// ErrAlreadyInjected is the reason for a Pod that has the sidecar already.
var ErrAlreadyInjected = errors.New("already has the tracehop sidecar")

// Inject reads the YAML documents in src (named source in errors) and
// returns them with the sidecar added to every Pod, Deployment,
// StatefulSet, DaemonSet and ReplicaSet. It refuses the whole input,
// naming every document at fault, when a workload has an unknown field,
// has the sidecar already or uses one of its ports or volume names.
func Inject(src []byte, source string, opts Options) ([]byte, Result, error) {
	var out bytes.Buffer
	var res Result
	var errs []error
	for i, doc := range splitDocuments(src) {
		injected, what, notes, err := injectDocument(doc.body, opts)
		if err != nil {
			de := &DocError{Source: source, Index: i + 1, Err: err}
			de.Kind, de.Name, _ = strings.Cut(what, " ")
			errs = append(errs, de)
			continue
		}
		out.Write(doc.separator)
		if injected == nil {
			out.Write(doc.body)
			res.Copied++
			continue
		}
		out.Write(injected)
		res.Injected = append(res.Injected, what)
		for _, n := range notes {
			res.Notes = append(res.Notes, what+": "+n)
		}
	}
	if len(errs) > 0 {
		return nil, res, errors.Join(errs...)
	}
	return out.Bytes(), res, nil
}

type document struct {
	separator []byte // the "---" line before it, if any
	body      []byte
}

// splitDocuments splits a YAML stream on its "---" lines, keeping every
// byte, so that documents that are not injected are copied as they were.
func splitDocuments(src []byte) []document {
	var docs []document
	cur := document{}
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 64*1024), len(src)+1)
	sc.Split(scanLinesKeepEnd)
	for sc.Scan() {
		line := sc.Bytes()
		trimmed := bytes.TrimRight(line, " \t\r\n")
		if bytes.Equal(trimmed, []byte("---")) || bytes.HasPrefix(trimmed, []byte("--- #")) {
			if cur.separator != nil || len(cur.body) > 0 {
				docs = append(docs, cur)
			}
			cur = document{separator: slices.Clone(line)}
			continue
		}
		cur.body = append(cur.body, line...)
	}
	if cur.separator != nil || len(cur.body) > 0 {
		docs = append(docs, cur)
	}
	return docs
}

func scanLinesKeepEnd(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i+1], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// kinds are the kinds inject adds the sidecar to, by apiVersion and kind.
var kinds = map[string]func() any{
	"v1/Pod":              func() any { return &corev1.Pod{} },
	"apps/v1/Deployment":  func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet": func() any { return &appsv1.StatefulSet{} },
	"apps/v1/DaemonSet":   func() any { return &appsv1.DaemonSet{} },
	"apps/v1/ReplicaSet":  func() any { return &appsv1.ReplicaSet{} },
}

// injectDocument returns the document with the sidecar, or nil when it is
// not a workload (it is then copied as it is). what is "KIND NAME" as far
// as it could be read.
func injectDocument(doc []byte, opts Options) (out []byte, what string, notes []string, err error) {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, "", nil, fmt.Errorf("not YAML: %w", err)
	}
	if root.Kind == 0 || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, "", nil, nil // empty, comments only, or not an object: not ours to change
	}
	top := root.Content[0]
	apiVersion, kind := scalar(top, "apiVersion"), scalar(top, "kind")
	name := scalar(lookup(top, "metadata"), "name")
	if ns := scalar(lookup(top, "metadata"), "namespace"); ns != "" {
		name = ns + "/" + name
	}
	what = kind + " " + name
	newObj, ok := kinds[apiVersion+"/"+kind]
	if !ok {
		for k := range kinds {
			if strings.HasSuffix(k, "/"+kind) && kind != "" {
				return nil, what, nil, fmt.Errorf("apiVersion %q: tracehop inject reads %s as %s; convert the manifest to that apiVersion", apiVersion, kind, strings.TrimSuffix(k, "/"+kind))
			}
		}
		return nil, what, nil, nil
	}
	obj := newObj()
	if err := decodeStrict(doc, obj); err != nil {
		return nil, what, nil, err
	}
	tmpl, path := template(obj)
	if tmpl.Annotations[SkipAnnotation] == "disabled" {
		return nil, what, nil, nil
	}
	if tmpl.Name == "" && path == nil {
		return nil, what, nil, errors.New("metadata.name is empty: a Pod needs a name")
	}
	if len(tmpl.Spec.Containers) == 0 {
		return nil, what, nil, errors.New("its Pod has no containers: the sidecar goes beside an application (a Pod needs at least one container)")
	}
	workloadName := scalar(lookup(top, "metadata"), "name")
	sidecar, volumes, err := plan(tmpl, workloadName, opts)
	if err != nil {
		return nil, what, nil, err
	}

	// Edit the YAML tree: add to it, change nothing else.
	tmplNode := top
	for _, k := range path {
		tmplNode = ensureMap(tmplNode, k)
	}
	meta := ensureMap(tmplNode, "metadata")
	annotations := ensureMap(meta, "annotations")
	setScalar(annotations, InjectedAnnotation, opts.Version)
	prom := map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": strconv.Itoa(int(opts.AdminPort)), "prometheus.io/path": "/metrics"}
	for _, k := range []string{"prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path"} {
		if v, ok := tmpl.Annotations[k]; ok && v != prom[k] {
			notes = append(notes, fmt.Sprintf("kept annotation %s: %q (tracehop's metrics are on port %d, path /metrics)", k, v, opts.AdminPort))
			continue
		}
		setScalar(annotations, k, prom[k])
	}
	spec := ensureMap(tmplNode, "spec")
	containers := lookup(spec, "containers")
	if err := appendNode(containers, sidecar); err != nil {
		return nil, what, nil, err
	}
	vols := lookup(spec, "volumes")
	if vols == nil {
		vols = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		spec.Content = append(spec.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "volumes"}, vols)
	}
	for _, v := range volumes {
		if err := appendNode(vols, v); err != nil {
			return nil, what, nil, err
		}
	}
	need := int64(opts.DrainTimeout/time.Second) + opts.PreStopSeconds + 5
	if g := tmpl.Spec.TerminationGracePeriodSeconds; g == nil || *g < need {
		if g != nil {
			notes = append(notes, fmt.Sprintf("raised terminationGracePeriodSeconds from %d to %d (preStop %ds + drain %s + 5s)", *g, need, opts.PreStopSeconds, opts.DrainTimeout))
		}
		setScalar(spec, "terminationGracePeriodSeconds", strconv.FormatInt(need, 10))
	}

	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return nil, what, nil, err
	}
	enc.Close()
	return buf.Bytes(), what, notes, nil
}

// template returns a workload's Pod template and its path in the document.
func template(obj any) (*corev1.PodTemplateSpec, []string) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &corev1.PodTemplateSpec{ObjectMeta: o.ObjectMeta, Spec: o.Spec}, nil
	case *appsv1.Deployment:
		return &o.Spec.Template, []string{"spec", "template"}
	case *appsv1.StatefulSet:
		return &o.Spec.Template, []string{"spec", "template"}
	case *appsv1.DaemonSet:
		return &o.Spec.Template, []string{"spec", "template"}
	case *appsv1.ReplicaSet:
		return &o.Spec.Template, []string{"spec", "template"}
	}
	panic(fmt.Sprintf("inject: no template for %T", obj))
}

// decodeStrict decodes a YAML document into a Kubernetes API type,
// failing on unknown and duplicate fields with every such field's path.
func decodeStrict(doc []byte, into any) error {
	js, err := kyaml.YAMLToJSONStrict(doc)
	if err != nil {
		return fmt.Errorf("cannot read it: %w", err)
	}
	strictErrs, err := kjson.UnmarshalStrict(js, into)
	if err != nil {
		return fmt.Errorf("cannot read it: %w", err)
	}
	if len(strictErrs) > 0 {
		msgs := make([]string, len(strictErrs))
		for i, e := range strictErrs {
			msgs[i] = e.Error()
		}
		return fmt.Errorf("%s (fix the field's name: see kubectl explain)", strings.Join(msgs, "; "))
	}
	return nil
}

// plan checks the Pod for the sidecar and its ports and returns the
// container and volumes to add.
func plan(tmpl *corev1.PodTemplateSpec, workloadName string, opts Options) (corev1.Container, []corev1.Volume, error) {
	spec := tmpl.Spec
	if v, ok := tmpl.Annotations[InjectedAnnotation]; ok {
		return corev1.Container{}, nil, fmt.Errorf("%w (annotation %s: %q): leave this document out, or remove the sidecar first", ErrAlreadyInjected, InjectedAnnotation, v)
	}
	ours := map[int32]string{opts.AdminPort: "tracehop-admin"}
	for _, p := range opts.Ports {
		ours[p.Number] = p.Name
	}
	var problems []string
	all := append(slices.Clone(spec.InitContainers), spec.Containers...)
	for _, c := range all {
		if c.Name == ContainerName {
			return corev1.Container{}, nil, fmt.Errorf("%w (a container named %q): leave this document out, or remove that container first", ErrAlreadyInjected, ContainerName)
		}
		for _, p := range c.Ports {
			if n, ok := ours[p.ContainerPort]; ok {
				problems = append(problems, fmt.Sprintf("container %q uses port %d, which the sidecar's %s needs (containers in a Pod share its ports): move it, or give tracehop other ports with -ports/-admin-port and the same in its config", c.Name, p.ContainerPort, n))
			}
			for _, ourName := range ours {
				if p.Name != "" && p.Name == ourName {
					problems = append(problems, fmt.Sprintf("container %q has a port named %q, which the sidecar's port takes: rename one (-ports NAME=PORT)", c.Name, p.Name))
				}
			}
		}
	}
	for _, v := range spec.Volumes {
		if v.Name == ConfigVolumeName || v.Name == TmpVolumeName {
			problems = append(problems, fmt.Sprintf("the Pod has a volume named %q already, which the sidecar needs: rename it", v.Name))
		}
	}
	if len(problems) > 0 {
		return corev1.Container{}, nil, errors.New(strings.Join(problems, "; "))
	}
	cm := opts.ConfigMap
	if cm == "" {
		cm = workloadName + "-tracehop"
	}
	admin := intstr.FromString("tracehop-admin")
	yes, no := true, false
	uid := int64(65532)
	c := corev1.Container{
		Name:            ContainerName,
		Image:           opts.Image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            []string{"run", "-c", ConfigPath, "-log-format", "json", "-drain-timeout", opts.DrainTimeout.String()},
		// Only metadata.name: podman kube play refuses other field paths
		// (metadata.namespace, spec.nodeName), and the config's node.id is
		// what needs it.
		Env: []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		},
		Ports: []corev1.ContainerPort{{Name: "tracehop-admin", ContainerPort: opts.AdminPort, Protocol: corev1.ProtocolTCP}},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: admin}},
			PeriodSeconds: 5, FailureThreshold: 2,
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: admin}},
			PeriodSeconds: 10, FailureThreshold: 3,
		},
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: opts.PreStopSeconds}}},
		Resources: opts.Resources,
		VolumeMounts: []corev1.VolumeMount{
			{Name: ConfigVolumeName, MountPath: "/etc/tracehop", ReadOnly: true},
			{Name: TmpVolumeName, MountPath: "/tmp"},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid,
			ReadOnlyRootFilesystem: &yes, AllowPrivilegeEscalation: &no,
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
	if opts.GOMAXPROCS > 0 {
		c.Env = append(c.Env, corev1.EnvVar{Name: "GOMAXPROCS", Value: strconv.Itoa(opts.GOMAXPROCS)})
	}
	for _, p := range opts.Ports {
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: p.Name, ContainerPort: p.Number, Protocol: corev1.ProtocolTCP})
	}
	vols := []corev1.Volume{
		{Name: ConfigVolumeName, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm}}}},
		{Name: TmpVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	return c, vols, nil
}

// appendNode adds v, encoded as the Kubernetes API encodes it, to seq.
func appendNode(seq *yaml.Node, v any) error {
	b, err := kyaml.Marshal(v)
	if err != nil {
		return err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return err
	}
	m := n.Content[0]
	// The API's encoding sorts keys; name goes first, as people write it.
	for i := 2; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "name" {
			m.Content = slices.Concat(m.Content[i:i+2], m.Content[:i], m.Content[i+2:])
			break
		}
	}
	seq.Style = 0 // block style: a flow sequence would put the sidecar on one line
	seq.Content = append(seq.Content, m)
	return nil
}

// lookup returns the value of key in mapping m, or nil.
func lookup(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func scalar(m *yaml.Node, key string) string {
	if n := lookup(m, key); n != nil && n.Kind == yaml.ScalarNode {
		return n.Value
	}
	return ""
}

// ensureMap returns the mapping under key in m, adding an empty one (or
// replacing a null) when there is none.
func ensureMap(m *yaml.Node, key string) *yaml.Node {
	if n := lookup(m, key); n != nil {
		if n.Kind != yaml.MappingNode { // key: (null) or key: ~
			*n = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		}
		return n
	}
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, n)
	return n
}

// setScalar sets key in m to the string or integer value.
func setScalar(m *yaml.Node, key, value string) {
	tag, style := "!!str", yaml.Style(0)
	if _, err := strconv.Atoi(value); err == nil && key == "terminationGracePeriodSeconds" {
		tag = "!!int"
	} else if value == "true" || value == "false" || value == "" || strings.ContainsAny(value[:1], "0123456789") {
		style = yaml.DoubleQuotedStyle // an annotation is a string: "true", "9901"
	}
	v := &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value, Style: style}
	if n := lookup(m, key); n != nil {
		*n = *v
		return
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
}
