//! One test's world: a fresh namespace holding the chart's ServiceAccounts, RBAC and Secrets,
//! two moto buckets (datastore and lake), the operator as a process with the chart's token, and
//! helpers to generate ledgers, build resources and wait for their status.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bronze::generate::{GenerateSpec, generate_datastore};
use bronze_operator::crd::{self, BronzeBackfill, BronzeBackfillSpec, BronzeBackfillStatus};
use bronze_testkit::MotoS3;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::kubelet::{ContainerMode, Faults, Kubelet};

pub const CHART: &str = "charts/bronze-operator";
pub const RELEASE: &str = "bronze-operator";
/// The worker image the chart hands the operator (`workers.image`); the kubelet ignores it and
/// runs the local `bronze-copier`, the image's ENTRYPOINT.
pub const WORKER_IMAGE: &str = "bronze:cluster-test";
const MANAGER: &str = "bronze-cluster-test";

/// Ledgers per partition in every test (small partitions keep the tier fast).
pub const PARTITION: u32 = 10;

pub fn workspace() -> PathBuf {
    bronze_testkit::workspace_root()
}

/// The image the container-mode tests run (`make test-cluster` builds it with `make
/// image-prebuilt` and sets `BRONZE_CLUSTER_IMAGE`), or `None` (said loudly; a failure with
/// `BRONZE_CLUSTER_REQUIRED=1`).
pub fn cluster_image() -> Option<String> {
    match std::env::var("BRONZE_CLUSTER_IMAGE")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(image) => Some(image),
        None => {
            assert!(
                std::env::var("BRONZE_CLUSTER_REQUIRED").as_deref() != Ok("1"),
                "BRONZE_CLUSTER_REQUIRED=1 but BRONZE_CLUSTER_IMAGE is not set: the container tests must not skip"
            );
            say(
                "container tests SKIPPED: BRONZE_CLUSTER_IMAGE is not set (run `make test-cluster`)",
            );
            None
        }
    }
}

/// Writes straight to the process's stderr: libtest captures `eprintln!`, and a skip or a seed
/// nobody sees is worthless.
pub fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// The admin kubeconfig, or `None` (said loudly) when the tier is skipped. With
/// `BRONZE_CLUSTER_REQUIRED=1` a missing cluster fails the test instead.
pub fn kubeconfig() -> Option<PathBuf> {
    match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            assert!(
                std::env::var("BRONZE_CLUSTER_REQUIRED").as_deref() != Ok("1"),
                "BRONZE_CLUSTER_REQUIRED=1 but KUBECONFIG is not set: the cluster tier must not skip"
            );
            say(
                "cluster tier SKIPPED: KUBECONFIG is not set (run `make test-cluster`, which starts a real API server)",
            );
            None
        }
    }
}

/// A binary of the workspace: `$ENV_VAR`, else `target/debug/NAME` (`make test-cluster` builds
/// them).
pub fn binary(name: &str, env_var: &str) -> PathBuf {
    let path = std::env::var_os(env_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/debug").join(name));
    assert!(
        path.exists(),
        "{} missing: `cargo build -p bronze -p bronze-operator` or set {env_var}",
        path.display()
    );
    path
}

pub fn copier_bin() -> PathBuf {
    binary("bronze-copier", "BRONZE_COPIER_BIN")
}

pub fn operator_bin() -> PathBuf {
    std::env::var_os("BRONZE_OPERATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_bronze-operator")))
}

/// One moto for the whole test process; every test uses its own buckets.
pub fn moto() -> &'static MotoS3 {
    static MOTO: OnceLock<MotoS3> = OnceLock::new();
    MOTO.get_or_init(MotoS3::start)
}

/// A small deterministic generator (splitmix64): the tests' randomness, bounded by a seed that
/// they print so a failure can be replayed (`BRONZE_CLUSTER_SEED`).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn seeded(test: &str) -> Rng {
        let seed = std::env::var("BRONZE_CLUSTER_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        say(&format!(
            "{test}: seed {seed} (replay with BRONZE_CLUSTER_SEED={seed})"
        ));
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// A generated Galexie datastore on local disk: its files by key, the ledger each object holds.
pub struct Datastore {
    pub dir: PathBuf,
    /// `(key relative to the datastore root, first ledger of the object or None for
    /// .config.json)`, in ledger order.
    pub objects: Vec<(String, Option<u32>)>,
}

impl Datastore {
    /// `ledgers` real-sized pubnet ledgers from ledger 2, one per object.
    pub fn generate(dir: &Path, ledgers: u32) -> Datastore {
        Self::generate_with(&GenerateSpec::pubnet_variants(dir, &workspace(), ledgers))
    }

    /// `ledgers` small (early-history-sized, 2.5-7 KB of XDR) pubnet ledgers from ledger 2, one
    /// per object: the benchmarks' small shape (stellar-core's protocol 0, 12 and 19 samples and
    /// testnet ledgers, relinked into one chain).
    pub fn generate_small(dir: &Path, ledgers: u32) -> Datastore {
        let root = workspace();
        let sample = |p: u32| {
            root.join(format!(
                "ledger/tests/data/stellar-core-protocols/ledger-close-meta-v0-protocol-{p}.xdr"
            ))
        };
        let templates = vec![
            sample(0),
            sample(12),
            sample(19),
            root.join("tests/fixtures/testnet-datastore/FFFFFFFF--0-63999"),
        ];
        Self::generate_with(&GenerateSpec {
            templates,
            ..GenerateSpec::pubnet_variants(dir, &root, ledgers)
        })
    }

    fn generate_with(spec: &GenerateSpec) -> Datastore {
        let dir = spec.out.as_path();
        generate_datastore(spec).expect("generate the datastore");
        let mut objects = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let key = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                objects.push((key.clone(), ledger_of(&key)));
            }
        }
        objects.sort_by_key(|(k, l)| (l.is_some(), *l, k.clone()));
        Datastore {
            dir: dir.to_path_buf(),
            objects,
        }
    }

    /// The key of the object holding `ledger`.
    pub fn key_of(&self, ledger: u32) -> &str {
        &self
            .objects
            .iter()
            .find(|(_, l)| *l == Some(ledger))
            .unwrap_or_else(|| panic!("no object for ledger {ledger}"))
            .0
    }

    pub fn bytes(&self, key: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(key)).unwrap()
    }
}

/// `FFFFFFFD--2.xdr.zst` → 2 (the Galexie object name ends in `--<first ledger>[-<last>]`).
fn ledger_of(key: &str) -> Option<u32> {
    let name = key.rsplit('/').next()?;
    let rest = name.strip_suffix(".xdr.zst")?;
    let first = rest.rsplit("--").next()?;
    first.split('-').next()?.parse().ok()
}

/// How the operator is started (see [`TestEnv::operator`]).
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    /// The Pod name it believes it has (`POD_NAME`: its Lease identity).
    pub identity: String,
    /// Keep the chart's `--leader-election` (the tests render the chart with it on).
    pub leader_election: bool,
}

impl OperatorOptions {
    pub fn named(identity: &str) -> Self {
        OperatorOptions {
            identity: identity.into(),
            leader_election: true,
        }
    }
}

/// The operator as a process (killed on drop).
pub struct Operator {
    child: Child,
    pub log: PathBuf,
    pub options: OperatorOptions,
    /// Its `--http-address` (health, readiness, `/metrics`).
    pub http: String,
}

impl Operator {
    /// Its `/metrics` page (Prometheus text).
    pub fn metrics(&self) -> String {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(&self.http)
            .unwrap_or_else(|e| panic!("operator /metrics at {}: {e}", self.http));
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.http
        )
        .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        out
    }

    /// Reconciles so far, whatever their result (`bronze_operator_reconciliations_total`).
    pub fn reconciles(&self) -> u64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with("bronze_operator_reconciliations_total{"))
            .map(|l| {
                let value = l.rsplit(' ').next().unwrap();
                value.parse::<f64>().unwrap_or_else(|_| panic!("{l}")) as u64
            })
            .sum()
    }

    /// SIGKILL, no grace.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A test's namespace and everything in it. Drop deletes the namespace (best effort).
pub struct TestEnv {
    pub test: String,
    pub ns: String,
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub s3: &'static MotoS3,
    pub ledgers_bucket: String,
    pub lake_bucket: String,
    /// The chart as rendered for this namespace (the Helm engine's objects).
    pub chart: Vec<Value>,
    server: String,
    started: AtomicUsize,
}

impl TestEnv {
    /// `None` when the tier is skipped (see [`kubeconfig`]).
    pub async fn start(test: &str) -> Option<TestEnv> {
        let kubeconfig = kubeconfig()?;
        bronze_operator::install_crypto_provider();
        let client = Client::try_default()
            .await
            .expect("a client from KUBECONFIG");
        let server = server_of(&kubeconfig);
        apply_crd(&client).await;
        let short: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(20)
            .collect::<String>()
            .to_lowercase();
        let ns = bronze_testkit::unique_name(&format!("bt-{short}"))
            .to_lowercase()
            .replace('_', "-");
        let ns: String = ns.chars().take(40).collect();
        let ns = ns.trim_end_matches('-').to_string();
        Api::<Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .expect("create the test namespace");
        let s3 = moto();
        let ledgers_bucket = format!("{ns}-ledgers");
        let lake_bucket = format!("{ns}-lake");
        s3.create_bucket(&ledgers_bucket);
        s3.create_bucket(&lake_bucket);
        let dir = tempfile::Builder::new()
            .prefix("bronze-cluster-")
            .tempdir()
            .unwrap();
        let chart = render_chart(dir.path(), &ns, &chart_values(&ns));
        let env = TestEnv {
            test: test.into(),
            ns,
            client,
            dir,
            s3,
            ledgers_bucket,
            lake_bucket,
            chart,
            server,
            started: AtomicUsize::new(0),
        };
        env.apply(&json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "pas-staging", "namespace": env.ns},
            "stringData": {"token": "cluster-test-staging-token"},
        }))
        .await;
        env.apply_chart_objects().await;
        say(&format!("{test}: namespace {}", env.ns));
        Some(env)
    }

    pub fn backfills(&self) -> Api<BronzeBackfill> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The rendered objects of `kind`.
    pub fn chart_objects(&self, kind: &str) -> Vec<&Value> {
        self.chart.iter().filter(|o| o["kind"] == kind).collect()
    }

    /// The operator's Deployment container as the chart renders it.
    pub fn operator_container(&self) -> &Value {
        &self.chart_objects("Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    }

    /// The operator's ServiceAccount (the Deployment's `serviceAccountName`).
    pub fn operator_service_account(&self) -> String {
        self.chart_objects("Deployment")[0]["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Server-side applies the chart's ServiceAccounts, Roles, RoleBindings and Secrets (as
    /// admin, as `helm install` would).
    async fn apply_chart_objects(&self) {
        for object in &self.chart {
            let kind = object["kind"].as_str().unwrap_or_default();
            if matches!(
                kind,
                "ServiceAccount" | "Role" | "RoleBinding" | "Secret" | "ConfigMap"
            ) {
                self.apply(object).await;
            }
        }
    }

    /// Server-side apply of one object (any kind the discovery-free mapping knows).
    pub async fn apply(&self, object: &Value) {
        let (api_version, kind) = (
            object["apiVersion"].as_str().unwrap(),
            object["kind"].as_str().unwrap(),
        );
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let ns = object["metadata"]["namespace"].as_str().unwrap_or(&self.ns);
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        let name = object["metadata"]["name"].as_str().unwrap();
        api.patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
    }

    /// A kubeconfig authenticated as ServiceAccount `sa` with a TokenRequest token.
    pub async fn kubeconfig_for(&self, sa: &str) -> PathBuf {
        let sas: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.ns);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let token = sas
            .create_token_request(sa, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for {sa}: {e}"))
            .status
            .expect("a token")
            .token;
        let path = self.dir.path().join(format!("kubeconfig-{sa}"));
        let config = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": self.server, "insecure-skip-tls-verify": true}}],
            "users": [{"name": sa, "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": sa, "namespace": self.ns}}],
            "current-context": "test",
        });
        std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
        path
    }

    /// A client authenticated as ServiceAccount `sa`.
    pub async fn client_for(&self, sa: &str) -> Client {
        let path = self.kubeconfig_for(sa).await;
        let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        Client::try_from(config).unwrap()
    }

    /// Starts `bronze-operator` as the chart's Deployment runs it: the container's args and
    /// environment (Secrets and the downward API resolved as a kubelet would), authenticated
    /// with a token of the chart's ServiceAccount. Only `--http-address` moves to a free loopback
    /// port and the log goes to text.
    pub async fn operator(&self, options: OperatorOptions) -> Operator {
        let n = self.started.fetch_add(1, Ordering::SeqCst);
        let container = self.operator_container().clone();
        let kubeconfig = self.kubeconfig_for(&self.operator_service_account()).await;
        let http = format!("127.0.0.1:{}", bronze_testkit::free_port());
        let mut args: Vec<String> = Vec::new();
        for arg in container["args"].as_array().unwrap() {
            let arg = arg.as_str().unwrap();
            if arg.starts_with("--http-address=") {
                args.push(format!("--http-address={http}"));
            } else if arg.starts_with("--log-format=") {
                args.push("--log-format=text".into());
            } else if !options.leader_election
                && (arg == "--leader-election" || arg.starts_with("--lease-name="))
            {
                continue;
            } else {
                args.push(arg.to_string());
            }
        }
        let env = self
            .resolve_env(
                container["env"].as_array().cloned().unwrap_or_default(),
                &options.identity,
            )
            .await;
        // The chart's Secrets reach the operator as the getting-started guide says.
        for var in ["AWS_ACCESS_KEY_ID", "BRONZE_PAS_TOKEN", STAGING_TOKEN_ENV] {
            assert!(
                env.iter().any(|(k, v)| k == var && !v.is_empty()),
                "the chart's Deployment does not give the operator {var}"
            );
        }
        let log = self
            .dir
            .path()
            .join(format!("operator-{n}-{}.log", options.identity));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(operator_bin());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .env("KUBECONFIG", &kubeconfig)
            // Never reach a cloud: no instance metadata, no ~/.aws.
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("NO_COLOR", "1")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd.spawn().expect("start bronze-operator");
        say(&format!(
            "{}: operator {} started ({}), log {}",
            self.test,
            options.identity,
            args.join(" "),
            log.display()
        ));
        Operator {
            child,
            log,
            options,
            http,
        }
    }

    /// A container's `env` resolved as the kubelet does: literal values, Secret and ConfigMap
    /// keys (read as admin), and the downward API fields the chart uses.
    pub async fn resolve_env(&self, env: Vec<Value>, pod_name: &str) -> Vec<(String, String)> {
        resolve_env(&self.client, &self.ns, env, pod_name).await
    }

    /// Uploads the datastore's `.config.json` and the objects of ledgers `<= upto` (all when
    /// `None`) to `s3://<ledgers bucket>/<prefix>`, in ledger order.
    pub fn upload(&self, ds: &Datastore, upto: Option<u32>) {
        for (key, ledger) in &ds.objects {
            if ledger.is_none_or(|l| upto.is_none_or(|u| l <= u)) {
                self.put_ledger_object(ds, key);
            }
        }
    }

    /// Uploads the objects of `ledgers`, in the order given (as an exporter makes them visible,
    /// in any order).
    pub fn reveal(&self, ds: &Datastore, ledgers: impl IntoIterator<Item = u32>) {
        for ledger in ledgers {
            self.put_ledger_object(ds, ds.key_of(ledger));
        }
    }

    pub fn put_ledger_object(&self, ds: &Datastore, key: &str) {
        self.s3.put_object(
            &self.ledgers_bucket,
            &format!("{DATASTORE_PREFIX}/{key}"),
            ds.bytes(key),
        );
    }

    /// A BronzeBackfill spec over this test's buckets: ledgers 2..=`ledger_end` (0 follows the
    /// tip), partitions of [`PARTITION`], PAS on (outbox in the lake), credentials from the
    /// chart's Secret, worker image and ServiceAccount from the operator's defaults. `extra` is
    /// merged over it (JSON merge).
    pub fn spec(&self, ledger_end: u32, extra: Value) -> BronzeBackfillSpec {
        let endpoint = self.s3.endpoint();
        let mut spec = json!({
            "network": "pubnet",
            "eraId": "cluster",
            "versionLabel": "v1",
            "ledgerStart": 2,
            "ledgerEnd": ledger_end,
            "partitionSize": PARTITION,
            "partitionsPerJob": 1,
            "maxConcurrentJobs": 2,
            "source": {
                "mode": "datastore", "datastoreType": "S3",
                "datastorePath": format!("{}/{DATASTORE_PREFIX}", self.ledgers_bucket),
                "s3Endpoint": endpoint, "s3Region": "us-east-1",
                "pollIntervalSeconds": 1,
            },
            "storage": {
                "backend": "s3", "bucket": self.lake_bucket, "endpoint": endpoint,
                "region": "us-east-1", "prefix": "bronze/",
            },
            "credentials": {"s3": {"secretName": format!("{RELEASE}-s3")}},
            "pas": {"enabled": true},
            "worker": {"backoffLimit": 3},
        });
        merge(&mut spec, extra);
        serde_json::from_value(spec).expect("a valid spec")
    }

    pub async fn create(&self, name: &str, spec: BronzeBackfillSpec) -> BronzeBackfill {
        self.backfills()
            .create(&PostParams::default(), &BronzeBackfill::new(name, spec))
            .await
            .unwrap_or_else(|e| panic!("create BronzeBackfill {name}: {e}"))
    }

    /// Polls `name` until `done(status)` holds; fails after `timeout`, or at once when `fail`
    /// holds. Prints each new phase/message.
    pub async fn wait(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&BronzeBackfillStatus) -> bool,
    ) -> BronzeBackfill {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            let b = self.backfills().get(name).await.unwrap();
            let status = b.status.clone().unwrap_or_default();
            let line = format!(
                "{:?} {} last={:?} {}",
                status.phase,
                status
                    .progress
                    .as_ref()
                    .map(|p| p.summary.as_str())
                    .unwrap_or(""),
                status.last_committed_ledger,
                status.message.as_deref().unwrap_or("")
            );
            if line != last {
                say(&format!("{}: {name}: {line}", self.test));
                last = line;
            }
            if done(&status) {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {name}: not {what} after {timeout:?}; status: {}",
                self.test,
                serde_json::to_string_pretty(&status).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Waits for phase Succeeded; fails at once on phase Failed.
    pub async fn succeeded(&self, name: &str, timeout: Duration) -> BronzeBackfill {
        self.wait(name, "Succeeded", timeout, |s| {
            never_failed(s);
            s.phase == Some(crd::Phase::Succeeded)
        })
        .await
    }

    /// `ledgers` ledgers from ledger 2, generated in this test's directory (not uploaded).
    pub fn datastore(&self, ledgers: u32) -> Datastore {
        Datastore::generate(&self.dir.path().join("datastore"), ledgers)
    }

    /// The kubelet player for this namespace's worker Pods.
    pub fn kubelet(&self, faults: Faults) -> Kubelet {
        Kubelet::start(self.client.clone(), &self.ns, faults, &self.test)
    }

    /// The kubelet player in container mode: every Pod of the namespace as a container of its
    /// image; `claims` binds PersistentVolumeClaims to host directories.
    pub fn container_kubelet(&self, faults: Faults, claims: BTreeMap<String, PathBuf>) -> Kubelet {
        // `https://HOST:PORT` (the control plane's kubeconfig).
        let authority = self.server.trim_start_matches("https://");
        let (host, port) = authority.rsplit_once(':').expect("the API server's port");
        let mode = ContainerMode {
            claims,
            api_host: host.to_string(),
            api_port: port
                .trim_end_matches('/')
                .parse()
                .expect("the API server's port"),
        };
        Kubelet::start_containers(self.client.clone(), &self.ns, faults, &self.test, mode)
    }

    /// The chart rendered again for this namespace with `extra` merged over the tests' values
    /// (e.g. the image and a user's volumes).
    pub fn render_with(&self, extra: Value) -> Vec<Value> {
        let mut values = chart_values(&self.ns);
        merge(&mut values, extra);
        render_chart(self.dir.path(), &self.ns, &values)
    }

    /// Names of the Jobs of the namespace.
    pub async fn job_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .jobs()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|j| j.name_any())
            .collect();
        names.sort();
        names
    }

    /// Keys in the lake under `prefix`.
    pub fn lake_keys(&self, prefix: &str) -> Vec<String> {
        self.s3.list_objects(&self.lake_bucket, prefix)
    }

    /// The environment a process needs to reach moto as the chart's credentials do.
    pub fn s3_env(&self) -> Vec<(String, String)> {
        self.s3.env()
    }

    /// `bronze-operator verify` on the backfill as `kubectl get bbf NAME -o yaml` prints it,
    /// with the lake's credentials: (exit code, output).
    pub async fn operator_verify(&self, name: &str) -> (i32, String) {
        let b = self.backfills().get(name).await.unwrap();
        let file = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, serde_yaml_ng::to_string(&b).unwrap()).unwrap();
        let out = Command::new(operator_bin())
            .arg("verify")
            .arg(&file)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.s3_env())
            .env("LOG_FORMAT", "text")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.show_logs_of_failed_test();
        }
        // Best effort, without a runtime: the API server is gone with the cluster anyway.
        let ns = self.ns.clone();
        let client = self.client.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = Api::<Namespace>::all(client)
                    .delete(&ns, &DeleteParams::default())
                    .await;
            });
        }
    }
}

impl TestEnv {
    /// A failed test's process logs (operators, workers) go with its tempdir: their tails are
    /// printed first, and the whole files kept under the target dir, so a failure seen once in
    /// CI can be read afterwards.
    fn show_logs_of_failed_test(&self) {
        let kept = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("cluster-failures")
            .join(&self.test);
        let _ = std::fs::create_dir_all(&kept);
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        let mut logs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            say(&format!(
                "---- {}: last {} lines of {} ----\n{}",
                self.test,
                tail.len(),
                log.display(),
                tail.join("\n")
            ));
            if let Some(name) = log.file_name() {
                let _ = std::fs::copy(&log, kept.join(name));
            }
        }
        say(&format!("{}: logs kept in {}", self.test, kept.display()));
    }
}

/// Where the datastore lives in the ledgers bucket.
pub const DATASTORE_PREFIX: &str = "landing/ledgers/pubnet";

/// An operator variable filled from a Secret of the user's (`operator.secretEnv`), as
/// docs/getting-started.md shows for a second PAS endpoint's token.
pub const STAGING_TOKEN_ENV: &str = "PAS_TOKEN_STAGING";

/// The values the tests install the chart with: RBAC as a Role in the test namespace, leader
/// election on, S3 keys (moto's dummy ones) and a PAS token turned into the chart's Secrets, one
/// more token from a Secret of the user's, and a worker image.
fn chart_values(ns: &str) -> Value {
    let (image, tag) = WORKER_IMAGE.split_once(':').unwrap();
    json!({
        "rbac": {"scope": "namespace"},
        "leaderElection": {"enabled": true},
        "credentials": {
            "s3": {"accessKeyId": moto().access_key(), "secretAccessKey": moto().secret_key()},
            "pas": {"token": "cluster-test-pas-token"},
        },
        "operator": {"watchNamespace": ns, "secretEnv": [
            {"name": STAGING_TOKEN_ENV, "secretName": "pas-staging", "key": "token"},
        ]},
        "workers": {"image": {"repository": image, "tag": tag}},
    })
}

/// The chart rendered by the Helm engine (`tests/py/chart_render.py`, helm-python-sdk) for
/// release namespace `ns`.
pub fn render_chart(dir: &Path, ns: &str, values: &Value) -> Vec<Value> {
    let file = dir.join("values.json");
    std::fs::write(&file, values.to_string()).unwrap();
    let out = Command::new(bronze_testkit::python())
        .arg(workspace().join("tests/py/chart_render.py"))
        .arg(workspace().join(CHART))
        .arg(RELEASE)
        .arg(ns)
        .arg(&file)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run tests/py/chart_render.py");
    assert!(
        out.status.success(),
        "chart_render.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("rendered objects as JSON")
}

pub async fn resolve_env(
    client: &Client,
    ns: &str,
    env: Vec<Value>,
    pod_name: &str,
) -> Vec<(String, String)> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), ns);
    let mut out = Vec::new();
    for e in env {
        let name = e["name"].as_str().unwrap().to_string();
        let from = &e["valueFrom"];
        let value = if let Some(v) = e["value"].as_str() {
            Some(v.to_string())
        } else if let Some(r) = from.get("secretKeyRef") {
            let secret = secrets.get_opt(r["name"].as_str().unwrap()).await.unwrap();
            let value = secret
                .and_then(|s| s.data)
                .and_then(|d| d.get(r["key"].as_str().unwrap()).cloned())
                .map(|b| String::from_utf8(b.0).unwrap());
            assert!(
                value.is_some() || r["optional"] == true,
                "env {name}: Secret key {r} missing (a kubelet would not start the container)"
            );
            value
        } else if let Some(r) = from.get("configMapKeyRef") {
            let cm = configmaps
                .get_opt(r["name"].as_str().unwrap())
                .await
                .unwrap();
            let value = cm
                .and_then(|c| c.data)
                .and_then(|d| d.get(r["key"].as_str().unwrap()).cloned());
            assert!(
                value.is_some() || r["optional"] == true,
                "env {name}: ConfigMap key {r} missing"
            );
            value
        } else if let Some(f) = from.get("fieldRef") {
            match f["fieldPath"].as_str().unwrap() {
                "metadata.namespace" => Some(ns.to_string()),
                "metadata.name" => Some(pod_name.to_string()),
                other => panic!("env {name}: fieldRef {other} not played"),
            }
        } else {
            panic!("env {name}: unsupported source {e}")
        };
        if let Some(v) = value {
            out.push((name, v));
        }
    }
    out
}

/// The `server` of a kubeconfig's first cluster.
fn server_of(kubeconfig: &Path) -> String {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).expect("read KUBECONFIG");
    config.clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.server.clone())
        .expect("a server in KUBECONFIG")
}

async fn apply_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = "bronzebackfills.bronze.obsrvr.io";
    crds.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(crd::crd()),
    )
    .await
    .expect("apply the CRD");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = crds.get(name).await.unwrap();
        let established = c
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        assert!(Instant::now() < deadline, "CRD not established");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// JSON merge patch (RFC 7386) of `patch` into `target`.
pub fn merge(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(map) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in map {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other,
    }
}

/// The committed manifests of a dataset in the lake, by partition start.
pub fn manifests(env: &TestEnv) -> BTreeMap<u32, bronze::publish::Manifest> {
    env.lake_keys("bronze/pubnet/cluster/v1/ledgers_lcm_raw/")
        .into_iter()
        .filter(|k| k.ends_with("/_manifest.json"))
        .map(|k| {
            let m = bronze::publish::Manifest::from_json(
                &env.s3.get_object(&env.lake_bucket, &k).unwrap(),
            )
            .unwrap();
            (m.partition.start, m)
        })
        .collect()
}

/// The PAS events in the lake's outbox, in key order, parsed.
pub fn pas_events(env: &TestEnv) -> Vec<(String, bronze::pas::PasEvent)> {
    env.lake_keys("bronze/_pas/pubnet/cluster/v1/")
        .into_iter()
        .filter(|k| {
            let name = k.rsplit('/').next().unwrap();
            !name.starts_with('_') && name.ends_with(".json")
        })
        .map(|k| {
            let e =
                bronze::pas::PasEvent::from_json(&env.s3.get_object(&env.lake_bucket, &k).unwrap())
                    .unwrap();
            (k, e)
        })
        .collect()
}

/// Asserts the outbox holds exactly one linear chain of one event per partition of
/// `2..=last`, in ledger order, each linking to the one before; returns the head.
pub fn assert_one_linear_chain(env: &TestEnv, last: u32) -> String {
    let mut events = pas_events(env);
    events.sort_by_key(|(k, _)| {
        let name = k.rsplit('/').next().unwrap();
        name.split('-').next().unwrap().parse::<u32>().unwrap()
    });
    let expected: Vec<String> = (0..(last - 1) / PARTITION)
        .map(|i| {
            let start = 2 + i * PARTITION;
            format!("{start}-{}.json", start + PARTITION - 1)
        })
        .collect();
    let names: Vec<String> = events
        .iter()
        .map(|(k, _)| k.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(names, expected, "one event per partition, nothing else");
    let mut prev = String::new();
    for (k, e) in &events {
        assert_eq!(
            e.chain.prev_event_hash, prev,
            "{k} does not link to the event before"
        );
        prev = e.chain.event_hash.clone();
    }
    prev
}

/// Fails the test when the backfill has failed (in a [`TestEnv::wait`] condition).
pub fn never_failed(s: &BronzeBackfillStatus) {
    assert_ne!(
        s.phase,
        Some(crd::Phase::Failed),
        "the backfill failed: {s:#?}"
    );
}

/// Waits up to `timeout` for `cond`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !cond().await {
        assert!(Instant::now() < deadline, "not {what} after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
