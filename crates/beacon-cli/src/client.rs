//! The admin API client used by the CLI's admin commands.

use anyhow::{Context, Result, anyhow};
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
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub fn new(args: &AdminArgs) -> Result<Self> {
        let token = args.token.clone().ok_or_else(|| {
            anyhow!("an admin token is required: pass --token or set BEACON_TOKEN")
        })?;
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
            token,
        })
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        let req = self
            .http
            .get(format!("{}/admin/v1{path}", self.base))
            .query(query);
        self.send(req).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let mut req = self.http.post(format!("{}/admin/v1{path}", self.base));
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(req).await
    }

    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let req = self
            .http
            .patch(format!("{}/admin/v1{path}", self.base))
            .json(body);
        self.send(req).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let req = self.http.delete(format!("{}/admin/v1{path}", self.base));
        self.send(req).await
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the collector at {}", self.base))?;
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
