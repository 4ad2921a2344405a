//! Nothing to link: this crate holds the tests of what Bronze ships (`tests/ship/`):
//!
//! * `image`: the Dockerfile (multi-stage, both binaries, non-root, pinned bases) and its
//!   agreement with the chart and the operator's worker Jobs;
//! * `chart`: the Helm chart, linted and rendered by the real Helm engine (PyPI
//!   `helm-python-sdk`), every object validated by `kubernetes-validate --strict`, values that
//!   the schema must reject, RBAC equal to the operator's API calls, the CRD copy;
//! * `samples`: every `examples/bronzebackfill-*.yaml` against the CRD's schema and CEL rules;
//! * `docs`: the references cover every config key, environment variable, CLI flag, exit code
//!   and CRD field; links resolve; every runbook command is tested or marked untested.
