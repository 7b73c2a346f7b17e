//! The one way the agent talks to a collector: reqwest over rustls (ring), system roots plus an
//! optional extra CA file, a proxy from the configuration or `HTTPS_PROXY`/`NO_PROXY`, a 10 s connect
//! and 30 s total timeout, no redirects, no retries, no kept-alive connections.
//!
//! Why each: the agent sends a few requests a day, so pooling buys nothing and an idle connection costs
//! a socket and memory on the host; a redirect could lead to plain http; a retry inside the client would
//! defeat the rule that a failure waits for the next due time. The crypto provider is passed in
//! explicitly, so the host does not have to install a process-wide rustls provider, and one it
//! installed for itself does not change the agent.

use crate::BuildError;
use crate::config::{Config, EnvLookup};
use crate::payload_log::PayloadLog;
use std::sync::Arc;
use std::time::Duration;

/// User-Agent of every request.
pub const USER_AGENT: &str = concat!("beacon-agent/", env!("CARGO_PKG_VERSION"));

/// The proxy to use, if any, and the hosts that bypass it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    pub url: String,
    pub no_proxy: Option<String>,
}

/// The configured proxy, else `HTTPS_PROXY`/`https_proxy`; the configured `no_proxy`, else
/// `NO_PROXY`/`no_proxy`.
pub fn proxy_settings(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<ProxySettings> {
    let nonempty = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let from_env = |names: [&str; 2]| names.into_iter().find_map(|n| nonempty(env(n)));
    let url =
        nonempty(config.proxy.clone()).or_else(|| from_env(["HTTPS_PROXY", "https_proxy"]))?;
    let no_proxy = nonempty(config.no_proxy.clone()).or_else(|| from_env(["NO_PROXY", "no_proxy"]));
    Some(ProxySettings { url, no_proxy })
}

/// The HTTP client and the payload log, made on first use: an agent whose channels are off never
/// builds either.
pub(crate) struct Transport {
    pub client: reqwest::Client,
    pub log: Option<PayloadLog>,
}

impl Transport {
    pub fn build(config: &Config, env: &EnvLookup) -> Result<Self, BuildError> {
        Ok(Self {
            client: build_client(config, env)?,
            log: PayloadLog::from_config(config),
        })
    }

    /// Appends a payload to the log, when it is on (on a blocking thread: it is file I/O).
    pub async fn log_payload(
        self: &Arc<Self>,
        channel: &'static str,
        method: &'static str,
        url: &str,
        body: Option<String>,
    ) {
        if self.log.is_none() {
            return;
        }
        let (me, url) = (self.clone(), url.to_string());
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(log) = &me.log
                && let Err(e) = log.append(channel, method, &url, body.as_deref())
            {
                tracing::warn!("payload log: {e}");
            }
        })
        .await;
    }
}

/// The rustls configuration: the ring provider, the platform's verifier (system roots) with the extra
/// CA file's certificates added, HTTP/1.1.
pub(crate) fn tls_config(config: &Config) -> Result<rustls::ClientConfig, BuildError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut extra = Vec::new();
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| BuildError::CaFile {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            extra.push(cert.map_err(|e| BuildError::CaFile {
                path: path.clone(),
                problem: e.to_string(),
            })?);
        }
        if extra.is_empty() {
            return Err(BuildError::CaFile {
                path: path.clone(),
                problem: "no certificate in it".into(),
            });
        }
    }
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| BuildError::Tls(e.to_string()))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

pub(crate) fn build_client(
    config: &Config,
    env: &EnvLookup,
) -> Result<reqwest::Client, BuildError> {
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(config)?)
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(config.connect_timeout_secs.max(1)))
        .timeout(Duration::from_secs(config.timeout_secs.max(1)))
        .redirect(reqwest::redirect::Policy::none())
        .retry(reqwest::retry::never())
        .pool_max_idle_per_host(0)
        .no_proxy();
    if let Some(p) = proxy_settings(config, &**env) {
        let bad = |e: &dyn std::fmt::Display| BuildError::Proxy(format!("{}: {e}", p.url));
        let parsed = reqwest::Url::parse(&p.url).map_err(|e| bad(&e))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad(&"the proxy must be an http:// or https:// url"));
        }
        let proxy = reqwest::Proxy::all(parsed.as_str())
            .map_err(|e| bad(&e))?
            .no_proxy(
                p.no_proxy
                    .as_deref()
                    .and_then(reqwest::NoProxy::from_string),
            );
        builder = builder.proxy(proxy);
    }
    builder.build().map_err(|e| BuildError::Tls(e.to_string()))
}

/// Reads a response body, refusing more than `limit` bytes.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, crate::SendError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(crate::SendError::http)? {
        if body.len() + chunk.len() > limit {
            return Err(crate::SendError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_from_config_else_environment() {
        let env = |k: &str| match k {
            "HTTPS_PROXY" => Some("http://127.0.0.1:3128".to_string()),
            "no_proxy" => Some("localhost".to_string()),
            _ => None,
        };
        let mut c = Config::default();
        assert_eq!(
            proxy_settings(&c, &env),
            Some(ProxySettings {
                url: "http://127.0.0.1:3128".into(),
                no_proxy: Some("localhost".into())
            })
        );
        c.proxy = Some("http://127.0.0.1:9".into());
        c.no_proxy = Some(".internal".into());
        assert_eq!(
            proxy_settings(&c, &env),
            Some(ProxySettings {
                url: "http://127.0.0.1:9".into(),
                no_proxy: Some(".internal".into())
            })
        );
        assert_eq!(proxy_settings(&Config::default(), &|_| None), None);
    }
}
