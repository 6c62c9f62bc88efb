// Package inject adds the tracehop sidecar to Kubernetes workloads, as
// `linkerd inject` and `istioctl kube-inject` do: `tracehop inject` reads
// YAML documents (Pods, Deployments, StatefulSets among others) and writes
// them back with a tracehop container in each Pod template, its config
// volume from a ConfigMap, its ports, probes, environment and the
// annotations Prometheus scrapes by.
//
// Workloads are decoded strictly with the Kubernetes API types (k8s.io/api):
// an unknown or duplicate field is an error that names the field, so a typo
// in a manifest fails here rather than being dropped silently by a cluster.
// The output is the input with the sidecar's nodes added: the other
// documents are copied byte for byte, and in an injected document the
// fields, their order and comments stay as they were.
//
// It is not for: running anything in a cluster (it never talks to one), or
// writing the sidecar's config (that is the ConfigMap the user writes; see
// deploy/kubernetes).
package inject
