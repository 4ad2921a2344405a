//! The sample BronzeBackfills: valid against the CRD's schema (with unknown fields rejected, as
//! the API server would silently prune them) and its CEL rules, and turned by the operator into
//! a worker config that `bronze-copier` accepts.

use bronze_operator::crd::{BronzeBackfill, DatastoreType, SourceMode, StorageBackend};
use bronze_operator::job::worker_config;

use crate::common::*;

fn parse(path: &str) -> BronzeBackfill {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_sample_matches_the_crd_schema() {
    let samples = samples();
    assert!(samples.len() >= 4, "{samples:?}");
    for path in &samples {
        let result = &checks()["samples"][path];
        assert!(result.is_object(), "{path} not checked");
        assert_eq!(result["objects"].as_array().unwrap().len(), 1, "{path}");
        assert_eq!(
            result["errors"],
            serde_json::json!([]),
            "{path} does not match the CRD's openAPIV3Schema"
        );
    }
}

#[test]
fn the_schema_check_rejects_a_misspelt_field() {
    let errors = checks()["samples"][TYPO_SAMPLE]["errors"].to_string();
    assert!(errors.contains("partitionsize"), "{errors}");
}

#[test]
fn every_sample_passes_the_cel_rules_and_gives_a_valid_worker_config() {
    for path in samples() {
        let b = parse(&path);
        if let Err(e) = kube::core::cel::validate_cel(&b) {
            panic!("{path}: CEL rules of the CRD fail: {e:?}");
        }
        let config = worker_config(&b.spec, "2025-01-15T10:00:00Z")
            .unwrap_or_else(|e| panic!("{path}: worker config: {e}"));
        // Offline validation as `bronze-copier -validate` does it; a local directory that only
        // exists inside the cluster is the one thing allowed to fail here.
        if let Err(errors) = bronze::config::validate(&config) {
            let real: Vec<_> = errors
                .iter()
                .filter(|e| e.field != "storage.local_dir" && e.field != "source.local_path")
                .collect();
            assert!(real.is_empty(), "{path}: {real:?}");
        }
    }
}

#[test]
fn the_samples_cover_the_runbook_scenarios_and_an_s3_compatible_store() {
    let testnet = parse("examples/bronzebackfill-testnet-volume.yaml").spec;
    assert_eq!(testnet.network, "testnet");
    assert_eq!(testnet.source.mode, SourceMode::Datastore);
    assert_eq!(testnet.source.datastore_type, Some(DatastoreType::Gcs));
    assert_eq!(testnet.storage.backend, StorageBackend::Local);
    assert!(testnet.storage.volume_claim_name.is_some());
    assert!(testnet.pas.enabled);

    let pubnet = parse("examples/bronzebackfill-pubnet-gcs.yaml").spec;
    assert_eq!(pubnet.network, "pubnet");
    assert_eq!(pubnet.source.datastore_type, Some(DatastoreType::Gcs));
    assert_eq!(pubnet.storage.backend, StorageBackend::Gcs);
    assert!(pubnet.catalog.is_some());
    assert!(pubnet.pas.enabled && pubnet.pas.endpoint.is_some());
    // The chart puts the PAS Secret into the operator's environment under this name.
    assert_eq!(pubnet.pas.token_env.as_deref(), Some("BRONZE_PAS_TOKEN"));

    let minio = parse("examples/bronzebackfill-minio.yaml").spec;
    assert_eq!(minio.storage.backend, StorageBackend::S3);
    assert!(minio.storage.endpoint.is_some());
    assert_eq!(minio.source.datastore_type, Some(DatastoreType::S3));
    assert!(minio.source.s3_endpoint.is_some());
    assert!(minio.credentials.s3.is_some());
}

#[test]
fn the_samples_reference_what_the_chart_creates_by_default() {
    // Release `bronze-operator`: the worker ServiceAccount and the Secrets the chart makes.
    let names = [
        "bronze-operator-worker",
        "bronze-operator-s3",
        "bronze-operator-gcs",
        "bronze-operator-catalog",
        "bronze-operator-pas",
    ];
    let notes = checks()["renders"]["all-features"]["notes"]
        .as_str()
        .unwrap();
    assert!(notes.contains("bronze-operator-s3"));
    for path in [
        "examples/bronzebackfill-testnet-volume.yaml",
        "examples/bronzebackfill-pubnet-gcs.yaml",
        "examples/bronzebackfill-minio.yaml",
    ] {
        let b = parse(path);
        let sa = b
            .spec
            .worker
            .service_account_name
            .clone()
            .unwrap_or_default();
        assert_eq!(sa, "bronze-operator-worker", "{path}");
        let text = read(path);
        for line in text.lines().filter(|l| {
            l.contains("name: bronze-operator-") || l.contains("secretName: bronze-operator-")
        }) {
            assert!(
                names.iter().any(|n| line.contains(n)),
                "{path}: {line} names nothing the chart creates"
            );
        }
    }
}
