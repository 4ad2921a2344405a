//! The CRD as the API server enforces it (issue 10): the CRD generated from the Rust types,
//! applied to a real kube-apiserver, refuses invalid specs and changes to immutable fields with
//! readable messages (OpenAPI bounds and CEL `x-kubernetes-validations`), applies the defaults,
//! and serves the printer columns in table form (what `kubectl get bbf` prints).

use crate::harness::TestEnv;
use bronze_operator::crd::BronzeBackfill;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// A valid resource as a user writes it: only what has no default.
fn minimal(name: &str) -> Value {
    json!({
        "apiVersion": "bronze.obsrvr.io/v1alpha1",
        "kind": "BronzeBackfill",
        "metadata": {"name": name},
        "spec": {
            "network": "pubnet",
            "eraId": "p23",
            "versionLabel": "v1",
            "ledgerStart": 2,
            "ledgerEnd": 100001,
            "source": {"mode": "s3", "s3Bucket": "ledgers"},
            "storage": {"backend": "s3", "bucket": "lake"},
            "worker": {"image": "bronze:test"},
        },
    })
}

fn api(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::erase::<BronzeBackfill>(&()),
    )
}

/// The API server's message for creating `body`, or `None` when it is accepted.
async fn create_error(api: &Api<DynamicObject>, body: Value) -> Option<String> {
    let object: DynamicObject = serde_json::from_value(body).unwrap();
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => None,
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{e:?}");
            Some(e.message)
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// `body` with the field at `pointer` set (added when absent).
fn with(mut body: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    body.pointer_mut(parent).unwrap()[key] = value;
    body
}

#[tokio::test]
async fn invalid_specs_are_refused_with_readable_messages() {
    let Some(env) = TestEnv::start("crd").await else {
        return;
    };
    let api = api(&env.client, &env.ns);
    let cases: [(&str, Value, &str); 7] = [
        (
            "ledgerEnd before ledgerStart",
            with(minimal("a"), "/spec/ledgerEnd", json!(1)),
            "ledgerEnd must be 0 (follow the datastore tip) or >= ledgerStart",
        ),
        (
            "ledgerStart 0",
            with(minimal("b"), "/spec/ledgerStart", json!(0)),
            "spec.ledgerStart: Invalid value",
        ),
        (
            "a ledger beyond uint32",
            with(minimal("c"), "/spec/ledgerEnd", json!(4_294_967_296u64)),
            "spec.ledgerEnd: Invalid value",
        ),
        (
            "partitionSize 0",
            with(minimal("d"), "/spec/partitionSize", json!(0)),
            "spec.partitionSize: Invalid value",
        ),
        (
            "s3 source without a bucket",
            with(minimal("e"), "/spec/source", json!({"mode": "s3"})),
            "source.s3Bucket is required when mode is s3",
        ),
        (
            "unknown network without a passphrase",
            with(minimal("f"), "/spec/network", json!("localnet")),
            "networkPassphrase is required for networks other than pubnet, testnet and futurenet",
        ),
        (
            "a path-unsafe era",
            with(minimal("g"), "/spec/eraId", json!("../p23")),
            "spec.eraId",
        ),
    ];
    for (what, body, expected) in cases {
        let message = create_error(&api, body).await;
        let message = message.unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(message.contains(expected), "{what}: {message}");
    }
    assert_eq!(create_error(&api, minimal("ok")).await, None);
}

#[tokio::test]
async fn immutable_fields_cannot_change_and_operational_knobs_can() {
    let Some(env) = TestEnv::start("crd-imm").await else {
        return;
    };
    let api = api(&env.client, &env.ns);
    assert_eq!(create_error(&api, minimal("imm")).await, None);
    let api = &api;
    let patch = |spec: Value| async move {
        match api
            .patch(
                "imm",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
        {
            Ok(_) => None,
            Err(kube::Error::Api(e)) => Some(e.message),
            Err(e) => panic!("unexpected error: {e}"),
        }
    };
    let changes = [
        (json!({"network": "testnet"}), "network is immutable"),
        (json!({"eraId": "p24"}), "eraId is immutable"),
        (json!({"versionLabel": "v2"}), "versionLabel is immutable"),
        (json!({"ledgerStart": 3}), "ledgerStart is immutable"),
        (json!({"partitionSize": 64}), "partitionSize is immutable"),
        (
            json!({"storage": {"bucket": "other"}}),
            "storage.bucket and storage.localDir are immutable",
        ),
        (
            json!({"storage": {"prefix": "elsewhere/"}}),
            "storage.prefix is immutable",
        ),
        (
            json!({"storage": {"backend": "gcs"}}),
            "storage.backend is immutable",
        ),
        (
            json!({"pas": {"enabled": true}}),
            "pas.enabled is immutable",
        ),
    ];
    for (change, expected) in changes {
        let message = patch(change.clone()).await;
        let message = message.unwrap_or_else(|| panic!("{change}: accepted"));
        assert!(message.contains(expected), "{change}: {message}");
    }
    // Operational knobs stay free: suspend, concurrency, the end of the range, the image.
    let knobs = json!({"suspend": true, "maxConcurrentJobs": 8, "partitionsPerJob": 2,
                       "ledgerEnd": 0, "worker": {"image": "bronze:next"}});
    assert_eq!(patch(knobs).await, None);
}

#[tokio::test]
async fn defaults_are_applied_and_the_printer_columns_are_served_as_a_table() {
    let Some(env) = TestEnv::start("crd-cols").await else {
        return;
    };
    let api = api(&env.client, &env.ns);
    assert_eq!(create_error(&api, minimal("cols")).await, None);
    let typed: Api<BronzeBackfill> = env.backfills();
    let b = typed.get("cols").await.unwrap();
    // The server filled in what the user left out, with the documented defaults.
    let stored = serde_json::to_value(&api.get("cols").await.unwrap().data["spec"]).unwrap();
    assert_eq!(stored["partitionSize"], 10_000);
    assert_eq!(stored["partitionsPerJob"], 1);
    assert_eq!(stored["maxConcurrentJobs"], 4);
    assert_eq!(stored["source"]["pollIntervalSeconds"], 30);
    assert_eq!(stored["storage"]["prefix"], "bronze/");
    assert_eq!(stored["storage"]["compression"], "zstd");
    assert_eq!(stored["pas"]["enabled"], false);
    assert_eq!(stored["worker"]["backoffLimit"], 3);
    assert_eq!(stored["worker"]["maxAttempts"], 3);
    assert_eq!(b.spec.worker.active_deadline_seconds, 6 * 3600);

    // A status as the operator writes it, through the status subresource.
    let status = json!({
        "apiVersion": "bronze.obsrvr.io/v1alpha1", "kind": "BronzeBackfill",
        "status": {
            "phase": "Running",
            "progress": {"committedPartitions": 3, "totalPartitions": 10, "percent": 30,
                         "summary": "3/10 (30%)", "startedAt": "2025-01-15T10:00:00Z",
                         "startedFromLedger": 1},
            "lastCommittedLedger": 30001,
            "ledgersPerSecond": 12.5,
        },
    });
    typed
        .patch_status(
            "cols",
            &PatchParams::apply("bronze-crd-test").force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();

    // `kubectl get bbf`: the server renders the table from the CRD's printer columns.
    let request = http::Request::get(format!(
        "/apis/bronze.obsrvr.io/v1alpha1/namespaces/{}/bronzebackfills/cols",
        env.ns
    ))
    .header(
        "Accept",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    )
    .body(Vec::new())
    .unwrap();
    let table: Value = env.client.request(request).await.unwrap();
    assert_eq!(table["kind"], "Table", "{table}");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Name",
            "Network",
            "Era",
            "Phase",
            "Progress",
            "Last Ledger",
            "Rate",
            "Rebuild",
            "Age"
        ]
    );
    let cells = table["rows"][0]["cells"].as_array().unwrap();
    assert_eq!(cells[0], "cols");
    assert_eq!(cells[1], "pubnet");
    assert_eq!(cells[2], "p23");
    assert_eq!(cells[3], "Running");
    assert_eq!(cells[4], "3/10 (30%)");
    assert_eq!(cells[5], 30001);
    assert_eq!(cells[6], 12.5);
}
