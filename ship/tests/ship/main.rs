//! Checks of what Bronze ships. One test binary; the chart and samples are checked by one run of
//! `tests/py/chart_check.py` (the Helm engine and kubernetes-validate, in the test venv), shared
//! by the tests through [`common::checks`].

mod common;

mod chart;
mod docs;
mod image;
mod monitoring;
mod samples;
mod toolchain;
