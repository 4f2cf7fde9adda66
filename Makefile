# Two commands set everything up on a fresh Debian machine (run as root):
#   make run   installs what is missing, then runs the lab
#   make test  installs what is missing, then runs every test lane
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
# Debian packages: the reference CNI plugins the netns lane chains with ours; iproute2
# (`ip netns`), ping, sysctl and nsenter for the lab and tests; the venv module; and bcc
# (python3-bpfcc; the PyPI "bcc" is another project); gcc and libc6-dev to compile the
# spidernet-ipam forwarder (install-cni falls back to a slower Python one without them);
# nftables for the coordinator's reply-path marking inside pods. The kernel lane boots Debian's
# kernel under QEMU with virtme-ng (PyPI, in the dev extras): qemu-system-x86 brings what the
# lane's QEMU 10 (from bookworm-backports, unpacked into the cache by testbed/qemufetch.py)
# links against, and runs it (TCG),
# busybox-static goes into virtme-ng's initramfs, kmod (modprobe, depmod) loads the kernel's
# modules and indexes them, file tells virtme-ng the kernel's version. The k8s lane makes its
# test cluster's certificates with openssl. The images (testbed/images.py, `make image`), with
# no registry: debootstrap and debian-archive-keyring make the Debian base from Debian's
# archive, buildah builds deploy/Dockerfile on it, podman imports the base, exports archives
# and runs the image checks, runc is their runtime (crun is refused setrlimit here), git lists
# the build context, ca-certificates is the CA bundle handed to pip in the build, busybox-static
# (above) fills the pause and workload images. The node lane runs a real node on them:
# containerd (its ctr imports the archives) and runc under its kubelet, podman as the
# runtime without Kubernetes.
APT_PACKAGES := containernetworking-plugins iproute2 iputils-ping procps util-linux python3-venv python3-bpfcc linux-headers-amd64 gcc libc6-dev nftables qemu-system-x86 busybox-static kmod file openssl debootstrap debian-archive-keyring buildah podman runc git ca-certificates containerd
VENV_STAMP := $(VENV)/.spidernet-installed

.PHONY: help run test bench image manifests setup deps venv lint typecheck contracts unit netns kernel k8s node package clean

help:
	@echo "make run    install what is missing, then run the lab"
	@echo "make test   install what is missing, then run every test lane"
	@echo "make manifests  render deploy/manifests and deploy/monitoring from deploy/chart (builds helm once)"
	@echo "make image  install what is missing, then build the images here (base, spidernet, pause, busybox) and their archives"
	@echo "make bench  spidernet-ipam vs host-local, allocation vs pool fill, the CNI chain, detection, memory (service and plugins), 1000 pods vs Whereabouts, pods to Running on a real node (BENCH_ARGS=--quick)"

setup: deps venv

# Installs only the Debian packages that are missing; a second run does nothing.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The venv sees Debian's bcc through --system-site-packages (DESIGN.md, "Environment facts").
venv: $(VENV_STAMP)
$(VENV_STAMP): pyproject.toml | deps
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

# The lab: `spidernet serve` on its embedded store, a segment with a gateway, and pods wired
# through Debian's macvlan plugin + spidernet-ipam. A lab left by an earlier run is removed
# first; `spidernet lab down` removes this one.
LAB_PODS ?= 3
run: setup
	@$(VENV)/bin/spidernet lab down >/dev/null 2>&1 || true
	@$(VENV)/bin/spidernet lab up --pods $(LAB_PODS)
	@echo "lab is up: '$(VENV)/bin/spidernet lab status' shows it, '$(VENV)/bin/spidernet lab down' removes it;"
	@echo "'SPIDERNET_SOCKET=/run/spidernet-lab/spidernet.sock $(VENV)/bin/spidernet get pools' asks its service."
	@echo "'SPIDERNET_SOCKET=/run/spidernet-lab/spidernet.sock $(VENV)/bin/spidernet diag lab/pod1' explains a pod's data path."

test: setup
	@$(PY) tests/lanes.py

# spidernet-ipam vs Go host-local per call, and allocation vs pool size and fill; then the full
# chain (macvlan + spidernet-ipam + spidernet-coordinator vs Go macvlan + host-local) in
# network namespaces: tables on stdout, bench/results/{ipam,chain}.{json,png}; then what
# ARP/NDP detection costs (one probe per profile; ADD with detection off and on),
# bench/results/detect.json; then memory: the node service idle and with 1000 endpoints
# (VmRSS/VmHWM from /proc) and a plugin process's peak RSS beside Go host-local's,
# bench/results/memory.json; then 1000 pods on 10 simulated nodes on a real kube-apiserver,
# spidernet's agents against Whereabouts (built with Go from the module proxy into
# /var/cache/spidernet), bench/results/cluster.{json,png}; then 100 pods at once on the node
# lane's real node, spidernet's network against macvlan + host-local and eth0 alone,
# bench/results/node.{json,png}.
# BENCH_ARGS (e.g. --quick) goes to each.
bench: setup
	@$(PY) -m bench.ipam $(BENCH_ARGS)
	@$(PY) -m bench.chain $(BENCH_ARGS)
	@$(PY) -m bench.detect $(BENCH_ARGS)
	@$(PY) -m bench.memory $(BENCH_ARGS)
	@$(PY) -m bench.cluster $(BENCH_ARGS)
	@$(PY) -m bench.node $(BENCH_ARGS)

# The images, built here with no registry (testbed/images.py; deploy/README.md, "The image"):
# a debootstrapped Debian base, deploy/Dockerfile on it, a pause and a busybox image, each
# exported as a docker-archive, all under /var/cache/spidernet/images (SPIDERNET_CACHE). About
# five minutes the first time; afterwards only what changed is rebuilt.
image: setup
	@nice -n 19 $(PY) -m spidernet.testbed.images

# deploy/chart is the source of the plain manifests: this renders them with a real helm (built
# once with Go into /var/cache/spidernet/helm; testbed/chart.py). The k8s lane fails when they
# are stale.
manifests: setup
	@$(PY) -m spidernet.testbed.chart manifests

# The k8s lane runs a real kube-apiserver and etcd, built once with Go into
# /var/cache/spidernet (SPIDERNET_CACHE): about ten to fifteen minutes the first time. The
# node lane adds the node's Kubernetes binaries, Multus and the images (a few minutes more).
lint typecheck contracts unit netns kernel k8s node package: setup
	@$(PY) tests/lanes.py $@

clean:
	rm -rf $(VENV) .build build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
