//! The admin API client used by the CLI's admin commands.

use crate::output::Format;
use anyhow::{Context, Result, anyhow, bail};
use beacon_wire::admin::ErrorBody;
use clap::Args;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct AdminArgs {
    /// Collector URL.
    #[arg(
        long,
        env = "BEACON_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Admin bearer token.
    #[arg(long, env = "BEACON_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Extra CA certificate (PEM) to trust, for a collector with a private certificate.
    #[arg(long, env = "BEACON_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Output: a table, the API's JSON, or CSV (the main table's rows).
    #[arg(long, value_enum, default_value = "table", global = true)]
    pub format: Format,
    /// Same as --format json.
    #[arg(long, global = true, conflicts_with = "format")]
    pub json: bool,
    /// Send the admin token over plain http:// to a host that is not this machine. Without it, such
    /// a URL is refused: anyone on the network path could read the token.
    #[arg(long, global = true)]
    pub insecure: bool,
}

impl AdminArgs {
    /// `--format`, with `--json` meaning `--format json`.
    pub fn format(&self) -> Format {
        if self.json { Format::Json } else { self.format }
    }
}

/// A query parameter, when given.
pub fn opt(k: &'static str, v: Option<String>) -> Option<(&'static str, String)> {
    v.map(|v| (k, v))
}

pub struct Client {
    http: reqwest::Client,
    /// The collector's URL, for messages.
    base: String,
    /// `<base>/admin/v1`.
    api: reqwest::Url,
    token: String,
}

/// Whether `url` names this machine: `localhost`, 127.0.0.0/8 or `::1`.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Client {
    pub fn new(args: &AdminArgs) -> Result<Self> {
        let token = args.token.clone().ok_or_else(|| {
            anyhow!("an admin token is required: pass --token or set BEACON_TOKEN")
        })?;
        let mut api = reqwest::Url::parse(&args.url)
            .with_context(|| format!("--url {:?} is not a URL", args.url))?;
        if !matches!(api.scheme(), "http" | "https") || api.host().is_none() {
            bail!(
                "--url {:?} must be an http:// or https:// URL with a host",
                args.url
            );
        }
        if api.scheme() == "http" && !is_loopback(&api) && !args.insecure {
            bail!(
                "refusing to send the admin token over plain http:// to {}: anyone on the network \
                 path could read it. Use an https:// URL (the collector's [tls] settings, or a TLS \
                 proxy in front of it), or pass --insecure if this network is trusted",
                api.host_str().unwrap_or_default()
            );
        }
        api.path_segments_mut()
            .map_err(|_| anyhow!("--url {:?} cannot have a path", args.url))?
            .pop_if_empty()
            .extend(["admin", "v1"]);
        api.set_query(None);
        api.set_fragment(None);
        let mut builder = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(60));
        if let Some(ca) = &args.ca_cert {
            let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        Ok(Self {
            http: builder.build()?,
            base: args.url.trim_end_matches('/').to_string(),
            api,
            token,
        })
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, String)],
    ) -> Result<T> {
        let req = self.http.get(self.url(path)?).query(query);
        self.send(req).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &[&str],
        body: Option<&B>,
    ) -> Result<T> {
        let mut req = self.http.post(self.url(path)?);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(req).await
    }

    /// A `POST` without a body, its parameters in the query string.
    pub async fn post_query<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, String)],
    ) -> Result<T> {
        let req = self.http.post(self.url(path)?).query(query);
        self.send(req).await
    }

    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &[&str],
        body: &B,
    ) -> Result<T> {
        let req = self.http.patch(self.url(path)?).json(body);
        self.send(req).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &[&str]) -> Result<T> {
        let req = self.http.delete(self.url(path)?);
        self.send(req).await
    }

    /// `<base>/admin/v1/<segments>`, each segment percent-encoded: a name holding `?`, `#`, `/` or
    /// `%` stays one segment and names exactly that object.
    pub fn url(&self, segments: &[&str]) -> Result<reqwest::Url> {
        let mut url = self.api.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| anyhow!("the collector URL cannot have a path"))?;
            for s in segments {
                // URL parsers resolve these instead of sending them.
                if s.is_empty() || matches!(*s, "." | "..") {
                    bail!("{s:?} cannot be sent as a name in a URL path");
                }
                path.push(s);
            }
        }
        Ok(url)
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T> {
        let resp = req.bearer_auth(&self.token).send().await.map_err(|e| {
            tracing::debug!(error = ?e, "request to the collector failed");
            anyhow!(
                "cannot reach the collector at {}: {}",
                self.base,
                unreachable_reason(&e)
            )
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            let msg = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| e.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(anyhow!("the collector answered {status}: {msg}"));
        }
        serde_json::from_slice(&bytes).context("the collector's answer is not the expected JSON")
    }
}

/// Why a request got no answer, in a few words: a network io error's kind when the chain holds
/// one (`connection refused`), else the innermost error's text (a DNS or TLS failure).
fn unreachable_reason(e: &reqwest::Error) -> String {
    use std::io::ErrorKind::*;
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut innermost: &dyn std::error::Error = e;
    let mut kind = None;
    while let Some(source) = innermost.source() {
        innermost = source;
        kind = innermost
            .downcast_ref::<std::io::Error>()
            .map(|io| io.kind())
            .or(kind);
    }
    match kind {
        Some(
            k @ (ConnectionRefused | ConnectionReset | ConnectionAborted | TimedOut
            | HostUnreachable | NetworkUnreachable | AddrNotAvailable),
        ) => k.to_string(),
        _ => innermost.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: &str, insecure: bool) -> AdminArgs {
        AdminArgs {
            url: url.into(),
            token: Some("t".repeat(20)),
            ca_cert: None,
            format: Format::Table,
            json: false,
            insecure,
        }
    }

    fn client(url: &str) -> Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client::new(&args(url, false)).unwrap()
    }

    #[test]
    fn loopback_hosts() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.255.255.254",
            "http://[::1]:8080",
            "http://localhost",
            "http://LocalHost:1",
        ] {
            assert!(is_loopback(&url.parse().unwrap()), "{url}");
        }
        for url in [
            "http://10.0.0.1",
            "http://0.0.0.0:8080",
            "http://[::ffff:7f00:1]",
            "http://localhost.example.com",
            "http://collector.example",
            "http://[2001:db8::1]",
        ] {
            assert!(!is_loopback(&url.parse().unwrap()), "{url}");
        }
    }

    #[test]
    fn plain_http_elsewhere_needs_insecure() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let err = Client::new(&args("http://10.0.0.1:8080", false))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--insecure") && err.contains("https://"),
            "{err}"
        );
        assert!(Client::new(&args("http://10.0.0.1:8080", true)).is_ok());
        assert!(Client::new(&args("https://10.0.0.1:8080", false)).is_ok());
        assert!(Client::new(&args("ftp://localhost", false)).is_err());
    }

    #[test]
    fn every_segment_is_encoded() {
        let c = client("http://127.0.0.1:8080");
        let url = |s: &[&str]| c.url(s).unwrap().to_string();
        assert_eq!(
            url(&["apikeys", "prod"]),
            "http://127.0.0.1:8080/admin/v1/apikeys/prod"
        );
        assert_eq!(
            url(&["apikeys", "prod?x=1"]),
            "http://127.0.0.1:8080/admin/v1/apikeys/prod%3Fx=1"
        );
        assert_eq!(
            url(&["apikeys", "a/b#c"]),
            "http://127.0.0.1:8080/admin/v1/apikeys/a%2Fb%23c"
        );
        assert_eq!(
            url(&["apikeys", "50%"]),
            "http://127.0.0.1:8080/admin/v1/apikeys/50%25"
        );
        assert_eq!(
            url(&["apikeys", "%2e%2E"]),
            "http://127.0.0.1:8080/admin/v1/apikeys/%252e%252E"
        );
        for bad in ["", ".", ".."] {
            assert!(c.url(&["apikeys", bad]).is_err(), "{bad:?}");
        }
        // A collector behind a path prefix keeps it.
        let c = client("http://127.0.0.1:8080/beacon/");
        assert_eq!(
            c.url(&["bulletins"]).unwrap().as_str(),
            "http://127.0.0.1:8080/beacon/admin/v1/bulletins"
        );
    }
}
