"""The test and demo harness, not part of the product: a local Kubernetes control plane with KWOK
and real nodes (localcluster, realnode), a GitOps stack of real Argo CD components (gitops) and
the demo's traffic (traffic).

Tests and benchmarks import it: `make install` installs it, editable, into .venv. make and the
demo run it as `python3 -m aiops_harness.<module>` with PYTHONPATH=hack. localcluster, realnode
and gitops use only the standard library, because they run under the system python3 as root
before any virtualenv exists.
"""
