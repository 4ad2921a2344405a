//! `bronze-operator`: reconciles `BronzeBackfill` resources into one worker Job per partition
//! range and sequences their commits (checkpoint, PAS chain, catalog) in the resource's status.
//!
//! One module per job: [`crd`] (the resource), [`plan`] (pure decisions), [`chain`] (reading and
//! verifying committed partitions in ledger order), [`PAS`] (the PAS chain, written with the
//! worker's PAS module), [`catalog`] (the PostgreSQL catalog, written with the worker's catalog
//! module), [`delta`] (the Delta log, written with the worker's Delta module), [`job`] (the worker Job), [`worker_shape`] (partitions in flight vs. the Pod's resources),
//! [`reconcile`] (Kubernetes I/O), [`controller`] (the watches), [`storage`] (object stores, via the worker library),
//! [`leader`] (optional Lease), [`metrics`] and [`http`] (health, readiness, metrics endpoint).

pub mod catalog;
pub mod controller;
pub mod crd;
pub mod delta;
pub mod http;
pub mod job;
pub mod leader;
pub mod metrics;
pub mod pas;
pub mod plan;
pub mod reconcile;
pub mod sequencer;
pub mod storage;
pub mod worker_shape;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod scale;

/// Makes rustls use aws-lc-rs, the provider object_store (reqwest) already links, as the process
/// default. Harmless when a default is already installed. Call before building any client.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    /// kube (hyper-rustls) and object_store (reqwest) share one rustls with aws-lc-rs: both
    /// clients build in one process, with aws-lc-rs as the process default provider.
    #[tokio::test]
    async fn kube_and_object_store_clients_build_with_one_crypto_provider() {
        super::install_crypto_provider();
        let provider = rustls::crypto::CryptoProvider::get_default().expect("a default provider");
        let aws_lc = rustls::crypto::aws_lc_rs::default_provider();
        let names = |p: &rustls::crypto::CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| format!("{:?}", s.suite()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(provider), names(&aws_lc));
        let config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        kube::Client::try_from(config).expect("kube client with rustls");
        // Explicit dummy keys: the test must not depend on (or reach for) ambient credentials,
        // whatever AWS_* variables the environment holds.
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("bucket")
            .with_region("us-east-1")
            .with_endpoint("https://127.0.0.1:9000")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .expect("object_store client");
    }
}
