//! TLS to PostgreSQL when the URL asks for it. Uses the server on this machine with its Debian
//! "snakeoil" certificate (CN=localhost) as the CA to trust; skipped where that is not set up.

use beacon_store_postgres::PgStore;

fn base_url() -> Option<String> {
    let url = std::env::var("BEACON_TEST_POSTGRES_URL").ok()?;
    let cert = std::path::Path::new("/etc/ssl/certs/ssl-cert-snakeoil.pem");
    if !cert.exists() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "NOTE: postgres TLS test SKIPPED: no {}",
            cert.display()
        );
        return None;
    }
    // The certificate names localhost, so connect by that name.
    Some(url.replace("127.0.0.1", "localhost"))
}

async fn ssl_in_use(store: &PgStore) -> bool {
    store.connection_uses_tls().await.unwrap()
}

#[tokio::test]
async fn sslmode_require_uses_verified_tls() {
    let Some(url) = base_url() else { return };
    let sep = if url.contains('?') { '&' } else { '?' };
    let store = PgStore::connect(&format!(
        "{url}{sep}sslmode=verify-full&sslrootcert=/etc/ssl/certs/ssl-cert-snakeoil.pem"
    ))
    .await
    .expect("tls connection with the server's certificate trusted");
    assert!(ssl_in_use(&store).await, "the session is encrypted");

    // Not trusted: refused, not silently downgraded.
    let err = PgStore::connect(&format!("{url}{sep}sslmode=require"))
        .await
        .err()
        .expect("untrusted certificate refused");
    assert!(
        err.to_string().contains("certificate") || err.to_string().contains("tls"),
        "{err}"
    );

    // No sslmode: plain.
    let plain = PgStore::connect(&url).await.unwrap();
    assert!(!ssl_in_use(&plain).await);
}
