//! `bronze-copier`: the standalone CLI of the runbook ([`bronze::copier`]).

fn main() -> std::process::ExitCode {
    bronze::copier::main()
}
