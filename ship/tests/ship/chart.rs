//! The Helm chart, checked with the real Helm engine and the Kubernetes API schemas.

use std::collections::BTreeSet;

use bronze_operator::reconcile::API_CALLS;
use serde_json::Value;

use crate::common::*;

#[test]
fn the_charts_crd_is_the_repositorys_crd() {
    let chart = read(&format!("{CHART}/crds/bronzebackfills.yaml"));
    let repo = read("crds/bronzebackfills.yaml");
    assert!(
        chart == repo,
        "{CHART}/crds/bronzebackfills.yaml differs from crds/bronzebackfills.yaml: run `make chart-crds`"
    );
    let crds = checks()["crds"].as_array().unwrap();
    assert_eq!(crds.len(), 1, "the chart ships exactly one CRD");
    assert_eq!(crds[0]["validation"], "ok", "{}", crds[0]["validation"]);
}

#[test]
fn strict_lint_is_clean_for_every_values_set() {
    let sets = values_sets();
    assert!(sets.len() >= 4, "{sets:?}");
    for (name, _) in &sets {
        let lint = &checks()["lint"][name];
        assert_eq!(lint["errors"], Value::Array(vec![]), "lint {name}: {lint}");
        // Severity 1 (info, e.g. "icon is recommended") is fine; 2 warning and 3 error are not.
        let serious: Vec<&Value> = lint["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
            .collect();
        assert!(serious.is_empty(), "lint {name}: {serious:?}");
    }
}

#[test]
fn every_rendered_object_validates_strictly() {
    for (name, _) in values_sets() {
        let objects = rendered(&name);
        assert!(!objects.is_empty(), "{name} rendered nothing");
        for o in objects {
            let kind = o["object"]["kind"].as_str().unwrap();
            let validation = o["validation"].as_str().unwrap();
            if matches!(kind, "ServiceMonitor" | "PodMonitor" | "PrometheusRule") {
                // No schema in kubernetes-validate (a Prometheus Operator CRD): checked below.
                assert_eq!(validation, "no-schema");
                continue;
            }
            assert_eq!(
                validation, "ok",
                "{name}: {kind} {} from {} against Kubernetes {KUBE_VERSION}",
                o["object"]["metadata"]["name"], o["template"]
            );
        }
    }
}

#[test]
fn defaults_render_a_cluster_wide_operator_with_its_two_service_accounts() {
    let objects = rendered("defaults");
    let kinds: BTreeSet<&str> = objects
        .iter()
        .map(|o| o["object"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "ServiceAccount"
        ])
    );
    object(objects, "ServiceAccount", RELEASE);
    let worker = object(objects, "ServiceAccount", "bronze-operator-worker");
    assert_eq!(worker["automountServiceAccountToken"], false);
    let args = strings(&deployment_container(objects)["args"]);
    assert!(
        !args.iter().any(|a| a.starts_with("--namespace")),
        "{args:?}"
    );
    assert!(!args.iter().any(|a| a == "--leader-election"), "{args:?}");
    // The worker defaults: the operator's own image and the chart's worker ServiceAccount.
    assert!(
        args.contains(&"--default-worker-image=ghcr.io/withobsrvr/bronze:0.1.0".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--default-worker-service-account=bronze-operator-worker".to_string()),
        "{args:?}"
    );
}

fn deployment_container(objects: &[Value]) -> &Value {
    let d = object(objects, "Deployment", RELEASE);
    &d["spec"]["template"]["spec"]["containers"][0]
}

/// The long flags of `bronze-operator` (from the clap `Args` in operator/src/main.rs) and the
/// environment variables they read.
fn operator_flags() -> (BTreeSet<String>, BTreeSet<String>) {
    let main = read("operator/src/main.rs");
    let args = &main[main.find("struct Args").expect("struct Args")..];
    let args = &args[..args.find("\n}").unwrap()];
    let (mut flags, mut envs) = (BTreeSet::new(), BTreeSet::new());
    let mut pending = false;
    for line in args.lines().map(str::trim) {
        if line.starts_with("#[arg(") && line.contains("long") {
            pending = true;
            if let Some(e) = line.split("env = \"").nth(1) {
                envs.insert(e.split('"').next().unwrap().to_string());
            }
        } else if pending && !line.starts_with("//") && !line.starts_with('#') {
            let field = line.split(':').next().unwrap().trim();
            flags.insert(format!("--{}", field.replace('_', "-")));
            pending = false;
        }
    }
    assert!(flags.contains("--http-address"), "{flags:?}");
    (flags, envs)
}

#[test]
fn operator_args_and_env_are_ones_the_binary_understands() {
    let (flags, envs) = operator_flags();
    for (name, _) in values_sets() {
        let c = deployment_container(rendered(&name));
        assert_eq!(
            strings(&c["command"]),
            ["/usr/local/bin/bronze-operator"],
            "{name}"
        );
        for arg in strings(&c["args"]) {
            let flag = arg.split('=').next().unwrap();
            assert!(
                flags.contains(flag),
                "{name}: {flag} is not a bronze-operator flag ({flags:?})"
            );
        }
        for var in ["POD_NAMESPACE", "POD_NAME"] {
            assert!(envs.contains(var), "bronze-operator no longer reads {var}");
            assert!(
                c["env"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["name"] == var),
                "{name}: {var} not set"
            );
        }
    }
}

#[test]
fn the_operator_runs_locked_down_with_probes_and_a_metrics_port() {
    for (name, _) in values_sets() {
        let objects = rendered(&name);
        let pod = &object(objects, "Deployment", RELEASE)["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(sc["runAsNonRoot"], true, "{name}");
        assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{name}");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let port = c["ports"][0]["containerPort"].as_i64().unwrap();
        assert!(
            strings(&c["args"]).contains(&format!("--http-address=0.0.0.0:{port}")),
            "{name}"
        );
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{name}");
        // A standby replica is ready on /readyz too (only /leader tells the leader apart), so
        // `helm --wait` finishes with leader election on.
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
        assert!(c["resources"]["limits"]["memory"].is_string(), "{name}");
        // The root filesystem is read-only: /tmp is an emptyDir.
        assert!(
            c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["mountPath"] == "/tmp"),
            "{name}"
        );
    }
}

/// (apiGroup, resource, verb) triples granted by the rendered Roles and ClusterRoles.
fn granted(objects: &[Value]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for kind in ["ClusterRole", "Role"] {
        for role in of_kind(objects, kind) {
            for rule in role["rules"].as_array().unwrap() {
                for g in strings(&rule["apiGroups"]) {
                    for r in strings(&rule["resources"]) {
                        for v in strings(&rule["verbs"]) {
                            assert!(g != "*" && r != "*" && v != "*", "wildcard in {rule}");
                            out.insert((g.clone(), r.clone(), v));
                        }
                    }
                }
            }
        }
    }
    out
}

fn api_calls(with_leases: bool) -> BTreeSet<(String, String, String)> {
    API_CALLS
        .iter()
        .filter(|(g, ..)| with_leases || *g != "coordination.k8s.io")
        .map(|(g, r, v, _)| (g.to_string(), r.to_string(), v.to_string()))
        .collect()
}

#[test]
fn rbac_grants_exactly_the_api_calls_the_operator_makes() {
    for (name, _) in values_sets() {
        let objects = rendered(&name);
        let leader = strings(&deployment_container(objects)["args"])
            .iter()
            .any(|a| a == "--leader-election");
        let got = granted(objects);
        let want = api_calls(leader);
        let extra: Vec<_> = got.difference(&want).collect();
        let missing: Vec<_> = want.difference(&got).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{name}: the chart's RBAC differs from reconcile::API_CALLS\n  granted but never used: {extra:?}\n  used but not granted: {missing:?}"
        );
        // Every role is bound to the operator's ServiceAccount, and nothing to the workers'.
        for binding in of_kind(objects, "ClusterRoleBinding")
            .into_iter()
            .chain(of_kind(objects, "RoleBinding"))
        {
            let subjects = binding["subjects"].as_array().unwrap();
            assert_eq!(subjects.len(), 1);
            assert_eq!(subjects[0]["kind"], "ServiceAccount");
            assert_eq!(subjects[0]["name"], RELEASE, "{name}: {binding}");
            assert_eq!(subjects[0]["namespace"], NAMESPACE);
        }
    }
    // And operator/rbac.yaml (kept equal to API_CALLS by the operator's own test) says the same.
    let rbac: Vec<Value> = read("operator/rbac.yaml")
        .split("\n---")
        .map(|doc| serde_yaml_ng::from_str(doc).unwrap())
        .collect();
    let wrapped: Vec<Value> = rbac
        .into_iter()
        .map(|o| serde_json::json!({"object": o}))
        .collect();
    assert_eq!(granted(&wrapped), api_calls(true));
}

#[test]
fn namespaced_scope_uses_roles_in_the_watched_namespace() {
    let objects = rendered("namespaced");
    assert!(of_kind(objects, "ClusterRole").is_empty());
    assert!(of_kind(objects, "ClusterRoleBinding").is_empty());
    let role = object(objects, "Role", RELEASE);
    assert_eq!(role["metadata"]["namespace"], "backfills");
    let binding = object(objects, "RoleBinding", RELEASE);
    assert_eq!(binding["metadata"]["namespace"], "backfills");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    let lease = object(objects, "Role", "bronze-operator-leader-election");
    assert_eq!(lease["metadata"]["namespace"], NAMESPACE);
    let args = strings(&deployment_container(objects)["args"]);
    assert!(
        args.contains(&"--namespace=backfills".to_string()),
        "{args:?}"
    );
    assert!(args.contains(&"--leader-election".to_string()), "{args:?}");
    // The worker ServiceAccount lives where the BronzeBackfills (and so their Jobs) are.
    let worker = object(objects, "ServiceAccount", "bronze-operator-worker");
    assert_eq!(worker["metadata"]["namespace"], "backfills");
}

#[test]
fn all_features_render_leader_election_metrics_secrets_and_placement() {
    let objects = rendered("all-features");
    let d = object(objects, "Deployment", RELEASE);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        c["image"],
        "registry.example.com/bronze@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    let args = strings(&c["args"]);
    for want in [
        "--leader-election",
        "--lease-name=bronze-leader",
        "--namespace=backfills",
        "--log-format=text",
        "--log-level=debug",
        "--http-address=0.0.0.0:9090",
        // workers.image / workers.serviceAccount: the defaults of spec.worker.
        "--default-worker-image=registry.example.com/bronze-worker:0.1.0",
        "--default-worker-service-account=bronze-worker",
    ] {
        assert!(args.contains(&want.to_string()), "{want} not in {args:?}");
    }
    // Only its own Lease may be read or updated.
    let lease = object(objects, "Role", "bronze-operator-leader-election");
    let named: Vec<&Value> = lease["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("resourceNames").is_some())
        .collect();
    assert_eq!(strings(&named[0]["resourceNames"]), ["bronze-leader"]);
    // Placement passes through.
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert!(pod["affinity"]["nodeAffinity"].is_object());
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    // Credentials reach the operator from the Secrets the chart made.
    let env = c["env"].as_array().unwrap();
    let from_secret = |var: &str| {
        env.iter()
            .find(|e| e["name"] == var)
            .map(|e| e["valueFrom"]["secretKeyRef"]["name"].clone())
    };
    assert_eq!(
        from_secret("AWS_ACCESS_KEY_ID"),
        Some("bronze-operator-s3".into())
    );
    assert_eq!(
        from_secret("AWS_SESSION_TOKEN"),
        Some("bronze-operator-s3".into())
    );
    assert!(
        env.iter()
            .any(|e| e["name"] == "GOOGLE_APPLICATION_CREDENTIALS"
                && e["value"] == "/var/run/secrets/bronze/gcs/key.json")
    );
    // The PAS token and the catalog DSN reach the operator as the variables BronzeBackfills
    // name (spec.pas.tokenEnv), and operator.secretEnv adds more.
    assert_eq!(
        secret_env(c),
        [
            ("BRONZE_PAS_TOKEN", "bronze-operator-pas", "token", false),
            (
                "BRONZE_CATALOG_DSN",
                "bronze-operator-catalog",
                "dsn",
                false
            ),
            ("BRONZE_PAS_TOKEN_STAGING", "pas-staging", "token", true),
        ]
        .map(|(n, s, k, o)| (n.to_string(), s.to_string(), k.to_string(), o))
    );
    // S3 and GCS keys in both namespaces (operator and workers); the PAS token for the operator
    // and the catalog DSN for the operator only (spec.pas.tokenEnv, spec.catalog.dsnEnv).
    let secrets: BTreeSet<(String, String)> = of_kind(objects, "Secret")
        .into_iter()
        .map(|s| {
            (
                s["metadata"]["name"].as_str().unwrap().to_string(),
                s["metadata"]["namespace"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("bronze-operator-s3", NAMESPACE),
        ("bronze-operator-s3", "backfills"),
        ("bronze-operator-gcs", NAMESPACE),
        ("bronze-operator-gcs", "backfills"),
        ("bronze-operator-catalog", NAMESPACE),
        ("bronze-operator-pas", NAMESPACE),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(secrets, want);
    // Workload identity annotations.
    let sa = object(objects, "ServiceAccount", RELEASE);
    assert!(sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].is_string());
    let worker = object(objects, "ServiceAccount", "bronze-worker");
    assert!(worker["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].is_string());
    // Metrics: a Service on the http port and a ServiceMonitor that selects it.
    let svc = object(objects, "Service", "bronze-operator-metrics");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    let sm = object(objects, "ServiceMonitor", RELEASE);
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        svc["spec"]["ports"][0]["name"]
    );
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    let labels = svc["metadata"]["labels"].as_object().unwrap();
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            labels.get(k),
            Some(v),
            "ServiceMonitor selector {k} does not match the Service"
        );
    }
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    // NOTES print what to paste into a BronzeBackfill.
    let notes = checks()["renders"]["all-features"]["notes"]
        .as_str()
        .unwrap();
    for want in [
        "  image: registry.example.com/bronze-worker:0.1.0\n",
        "  serviceAccountName: bronze-worker\n",
        "secretName: bronze-operator-s3",
        "dsnEnv: BRONZE_CATALOG_DSN",
        "tokenEnv: BRONZE_PAS_TOKEN",
        "BRONZE_PAS_TOKEN <- Secret bronze-operator-pas, key token",
        "BRONZE_PAS_TOKEN_STAGING <- Secret pas-staging, key token (optional)",
        "kubectl apply --server-side -f crds/bronzebackfills.yaml",
    ] {
        assert!(notes.contains(want), "NOTES lack {want:?}:\n{notes}");
    }
}

#[test]
fn existing_secrets_are_referenced_never_created() {
    let objects = rendered("existing-secrets");
    assert!(of_kind(objects, "Secret").is_empty());
    let c = deployment_container(objects);
    let env = c["env"].as_array().unwrap();
    let key_of = |var: &str| {
        let e = env
            .iter()
            .find(|e| e["name"] == var)
            .unwrap_or_else(|| panic!("{var}"));
        (
            e["valueFrom"]["secretKeyRef"]["name"]
                .as_str()
                .unwrap()
                .to_string(),
            e["valueFrom"]["secretKeyRef"]["key"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    assert_eq!(
        key_of("AWS_ACCESS_KEY_ID"),
        ("my-s3-keys".into(), "access-key".into())
    );
    assert_eq!(
        key_of("AWS_SECRET_ACCESS_KEY"),
        ("my-s3-keys".into(), "secret-key".into())
    );
    assert_eq!(
        key_of("AWS_SESSION_TOKEN"),
        ("my-s3-keys".into(), "session-token".into())
    );
    let pod = &object(objects, "Deployment", RELEASE)["spec"]["template"]["spec"];
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "my-gcs-key")
    );
    let notes = checks()["renders"]["existing-secrets"]["notes"]
        .as_str()
        .unwrap();
    assert!(notes.contains("dsnEnv: BRONZE_CATALOG_DSN"), "{notes}");
    assert!(notes.contains("must exist in both"), "{notes}");
    assert!(notes.contains("tokenEnv: PAS_BEARER"), "{notes}");
    assert_eq!(
        key_of("PAS_BEARER"),
        ("my-pas".into(), "bearer".into()),
        "credentials.pas.env names the variable"
    );
    assert_eq!(
        key_of("BRONZE_CATALOG_DSN"),
        ("my-catalog".into(), "url".into())
    );
}

/// The operator's environment variables from Secret keys: (name, Secret, key, optional), except
/// the S3 keys (those are for the operator's own storage client, not for BronzeBackfills).
fn secret_env(container: &Value) -> Vec<(String, String, String, bool)> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["name"].as_str().unwrap().starts_with("AWS_"))
        .filter_map(|e| {
            let r = e["valueFrom"].get("secretKeyRef")?;
            Some((
                e["name"].as_str()?.to_string(),
                r["name"].as_str()?.to_string(),
                r["key"].as_str()?.to_string(),
                r["optional"].as_bool().unwrap_or(false),
            ))
        })
        .collect()
}

#[test]
fn every_tokenenv_in_the_notes_is_set_in_the_operators_environment() {
    let mut seen = 0;
    for (name, _) in values_sets() {
        let c = deployment_container(rendered(&name));
        let notes = checks()["renders"][name.as_str()]["notes"]
            .as_str()
            .unwrap();
        let env = secret_env(c);
        for line in notes.lines() {
            if let Some(var) = line.trim().strip_prefix("tokenEnv: ") {
                seen += 1;
                assert!(
                    env.iter().any(|(n, ..)| n == var),
                    "{name}: NOTES say tokenEnv {var}, the Deployment sets {env:?}"
                );
            }
        }
        // Without credentials or secretEnv the operator gets no Secret at all.
        if name == "defaults" {
            assert!(env.is_empty(), "{env:?}");
        }
        // The operator never reads Secrets through the API: no RBAC on secrets.
        let objects = rendered(&name);
        assert!(
            !granted(objects).iter().any(|(_, r, _)| r == "secrets"),
            "{name}"
        );
    }
    assert!(seen >= 2, "no values set prints a tokenEnv");
}

#[test]
fn the_values_schema_rejects_bad_values() {
    let sets = bad_values_sets();
    assert!(sets.len() >= 8, "{sets:?}");
    for (name, path) in sets {
        let text = read(&path);
        // The first line of each file is `# <a fragment of the expected error>`.
        let fragment = text.lines().next().unwrap().trim_start_matches('#').trim();
        assert!(
            !fragment.is_empty(),
            "{path}: first line must name the expected error"
        );
        let result = &checks()["bad_values"][&name];
        let schema = result["schema_error"].as_str().unwrap_or("");
        let render = result["render_error"].as_str().unwrap_or("");
        assert!(!render.is_empty(), "{path} was accepted: {result}");
        // Rejected by values.schema.json, or (what a schema cannot say, e.g. an environment
        // variable set twice) by the templates' own `fail`.
        let error = if schema.is_empty() { render } else { schema };
        assert!(
            error.contains(fragment),
            "{path}: expected {fragment:?} in {error}"
        );
    }
}
