//! The catalog over TLS against a real PostgreSQL with `ssl = on` that accepts TCP connections
//! over TLS only (`hostssl`), with a CA and server certificate made for the test: so every
//! successful connection here is an encrypted one. libpq's `sslmode` semantics: `verify-full`
//! checks chain and host name, `verify-ca` the chain, `require`/`prefer` encrypt without checking,
//! `disable` is refused by such a server with a clear error. No error text carries the password.

use bronze::catalog::{self, Catalog};
use bronze_testkit::{PgOptions, Postgres, TestCa};

use crate::binary::text as text_of;
use crate::harness::Harness;

const PASSWORD: &str = "Tls-catalog-s3cret";
/// The server certificate's only name; connections reach it with `hostaddr=127.0.0.1`.
const HOST: &str = "db.bronze.test";

struct Server {
    ca: TestCa,
    pg: Postgres,
}

fn tls_only_server() -> Server {
    let ca = TestCa::new("Bronze test CA");
    let cert = ca.server_cert(&[HOST], &[]);
    let pg = Postgres::start_with(&PgOptions {
        tls: Some(cert),
        tls_only: true,
    });
    Server { ca, pg }
}

impl Server {
    /// Key/value DSN reaching 127.0.0.1 under the certificate's name, plus `extra`.
    fn dsn(&self, extra: &str) -> String {
        format!(
            "host={HOST} hostaddr=127.0.0.1 port={} user=postgres password={PASSWORD} dbname=postgres {extra}",
            self.pg.port()
        )
    }

    /// URL DSN to `127.0.0.1` (not a name in the certificate), plus `query`.
    fn url(&self, query: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres?{query}",
            self.pg.port()
        )
    }
}

async fn connect_error(dsn: &str) -> String {
    let err = match Catalog::connect_only(dsn).await {
        Ok(_) => panic!("connected, but should have been refused: {dsn}"),
        Err(e) => e.to_string(),
    };
    assert!(
        !err.contains(PASSWORD),
        "the password is in the error: {err}"
    );
    err
}

#[tokio::test]
async fn verify_full_connects_with_the_right_ca_and_host_and_refuses_a_wrong_one() {
    let s = tls_only_server();
    let ca = s.ca.cert();
    let ca = ca.display();

    // Right CA, right name: connects (over TLS: the server takes nothing else) and migrates.
    let (catalog, report) =
        catalog::connect(&s.dsn(&format!("sslmode=verify-full sslrootcert={ca}")))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", s.pg.log_tail()));
    assert_eq!(report.applied, vec![1, 2]);
    assert!(!catalog.is_closed());
    assert_eq!(
        s.pg.psql("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.application_name = 'bronze-copier'"),
        "1",
        "the catalog's session is encrypted"
    );
    drop(catalog);

    // Right CA, wrong host name (127.0.0.1 is not in the certificate).
    let err = connect_error(&s.url(&format!("sslmode=verify-full&sslrootcert={ca}"))).await;
    assert!(err.contains("cannot connect"), "{err}");
    assert!(err.contains("certificate not valid for name"), "{err}");
    assert!(
        err.contains(&format!("sslmode=verify-full, trusting {ca}")),
        "{err}"
    );
    assert!(err.contains("postgres:***@127.0.0.1"), "{err}");

    // Wrong CA, right host name.
    let other = TestCa::new("Some other CA");
    let err = connect_error(&s.dsn(&format!(
        "sslmode=verify-full sslrootcert={}",
        other.cert().display()
    )))
    .await;
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    assert!(err.contains("password=***"), "{err}");

    // verify-ca checks the chain only: the wrong name passes, the wrong CA does not; so does
    // `require` with a root certificate, as in libpq.
    Catalog::connect_only(&s.url(&format!("sslmode=verify-ca&sslrootcert={ca}")))
        .await
        .unwrap();
    Catalog::connect_only(&s.url(&format!("sslmode=require&sslrootcert={ca}")))
        .await
        .unwrap();
    let err = connect_error(&s.url(&format!(
        "sslmode=require&sslrootcert={}",
        other.cert().display()
    )))
    .await;
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(err.contains("sslmode=require, trusting"), "{err}");
}

#[tokio::test]
async fn require_and_prefer_encrypt_without_checking_and_disable_is_refused_clearly() {
    let s = tls_only_server();
    // No CA given: the certificate is not checked, the session is still encrypted.
    Catalog::connect_only(&s.url("sslmode=require"))
        .await
        .unwrap();
    Catalog::connect_only(&s.url("sslmode=prefer"))
        .await
        .unwrap();
    Catalog::connect_only(&s.dsn("")).await.unwrap(); // libpq's default, prefer

    let err = connect_error(&s.url("sslmode=disable")).await;
    assert!(err.contains("cannot connect"), "{err}");
    assert!(err.contains("no pg_hba.conf entry"), "{err}");
    assert!(err.contains("no encryption"), "{err}");
    assert!(err.contains("(sslmode=disable)"), "{err}");

    // verify-* with no usable CA file: named, before any connection is tried.
    let err = connect_error(&s.url("sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")).await;
    assert!(
        err.contains("sslrootcert /nonexistent/ca.pem: cannot read"),
        "{err}"
    );
}

#[tokio::test]
async fn without_tls_on_the_server_require_fails_and_prefer_falls_back() {
    let pg = Postgres::start();
    let dsn = pg
        .dsn()
        .replace("postgres@", &format!("postgres:{PASSWORD}@"));
    Catalog::connect_only(&format!("{dsn}?sslmode=prefer"))
        .await
        .unwrap();
    let err = connect_error(&format!("{dsn}?sslmode=require")).await;
    assert!(err.contains("server does not support TLS"), "{err}");
}

/// The copier binary end to end with `verify-full`: every partition recorded over TLS.
#[test]
fn the_copier_records_its_catalog_over_verified_tls() {
    let s = tls_only_server();
    s.pg.create_database("cat");
    let dsn = format!(
        "host={HOST} hostaddr=127.0.0.1 port={} user=postgres password={PASSWORD} dbname=cat sslmode=verify-full sslrootcert={}",
        s.pg.port(),
        s.ca.cert().display()
    );
    let work = Harness::pubnet(16).partition_size(8).yaml(&format!(
        "catalog:\n  postgres_dsn: \"{dsn}\"\n  strict: true\n"
    ));
    let out = work.run();
    let text = text_of(&out);
    assert!(out.status.success(), "{text}\n{}", s.pg.log_tail());
    assert!(!text.contains(PASSWORD), "{text}");
    assert_eq!(work.manifests().len(), 2);
    assert_eq!(
        s.pg.psql_in("cat", "SELECT count(*) FROM _meta_lineage"),
        "2"
    );
}
