//! Prints the `BronzeBackfill` CRD as YAML: `cargo run -p bronze-operator --bin crdgen > crds/bronzebackfills.yaml`.

fn main() {
    print!("{}", bronze_operator::crd::crd_yaml());
}
