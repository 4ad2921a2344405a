//! The cluster tier: the operator against a real Kubernetes API server and the real Job
//! controller (`make test-cluster` starts a node-less control plane and sets `KUBECONFIG`).
//!
//! Each test gets a fresh namespace with the chart's own ServiceAccounts, RBAC and Secrets
//! (rendered by the Helm engine), runs the real `bronze-operator` binary as a process with a
//! TokenRequest token of the chart's ServiceAccount, and plays the kubelet for the worker Pods
//! (runs `bronze-copier` with each Pod's args and env). Datastore and lake are moto S3 buckets.
//!
//! Without `KUBECONFIG` every test says loudly that it is skipped and passes, unless
//! `BRONZE_CLUSTER_REQUIRED=1` (CI), which turns a skip into a failure.

mod container;
mod harness;
mod kubelet;
mod podman;

mod chaos;
mod containers;
mod crd;
mod failures;
mod follow;
mod idle;
mod life;
mod race;
mod rbac;
mod rebuild;
mod scale;
mod uninstall;
