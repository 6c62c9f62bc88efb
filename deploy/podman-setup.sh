#!/usr/bin/env bash
# Installs and configures podman for `make k8s-demo` and `make e2e` on a
# Debian 12 machine (as root; idempotent: it does nothing that is done).
#   - podman (4.3) and runc: crun, podman's default runtime, fails on hybrid
#     cgroups ("cgroups in hybrid mode not supported"); runc works.
#   - lowered default ulimits: raising RLIMIT_NOFILE inside a container is
#     refused on these machines, and podman's defaults raise it.
# Both settings go in a drop-in, /etc/containers/containers.conf.d/, which
# podman reads after containers.conf: an existing containers.conf is left alone.
set -euo pipefail
if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  echo "podman-setup: installing podman and runc (Debian packages)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q podman runc >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q podman runc >/dev/null; }
fi
conf=/etc/containers/containers.conf.d/50-tracehop.conf
want='# Written by tracehop deploy/podman-setup.sh: runc (crun fails on hybrid cgroups),
# ulimits podman may set (raising them is refused here).
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"'
if [[ ! -f $conf ]] || [[ $(cat "$conf") != "$want" ]]; then
  mkdir -p "$(dirname "$conf")"
  printf '%s\n' "$want" >"$conf"
  echo "podman-setup: wrote $conf" >&2
fi
runtime=$(podman info --format '{{.Host.OCIRuntime.Name}}')
[[ $runtime == runc ]] || { echo "podman-setup: podman runs $runtime, not runc: is runtime set again after $conf?" >&2; exit 1; }
echo "podman-setup: $(podman --version), runtime $runtime, network backend $(podman info --format '{{.Host.NetworkBackend}}')" >&2
