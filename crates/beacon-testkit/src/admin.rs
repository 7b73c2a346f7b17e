//! The admin API calls tests repeat, authenticated with [`ADMIN_TOKEN`].

use crate::{ADMIN_TOKEN, block_on};
use serde_json::{Value, json};

/// An admin API client for the collector at `url` (`http://…` or `https://…`, no path).
#[derive(Clone)]
pub struct Admin {
    pub url: String,
    pub http: reqwest::Client,
}

/// A project the admin API created: its id and first public key.
#[derive(Debug, Clone)]
pub struct Project {
    pub id: i64,
    pub key: String,
}

impl Project {
    /// The DSN for this project at `base` (`scheme://host:port`, e.g. a forwarder's URL).
    pub fn dsn(&self, base: &str) -> String {
        let (scheme, host) = base.split_once("://").expect("scheme://host");
        format!("{scheme}://{}@{host}/{}", self.key, self.id)
    }
}

impl Admin {
    /// A plain-HTTP client (or any client: see [`Admin::with_client`]).
    pub fn new(url: &str) -> Admin {
        crate::install_crypto();
        Admin::with_client(url, reqwest::Client::new())
    }

    pub fn with_client(url: &str, http: reqwest::Client) -> Admin {
        Admin {
            url: url.trim_end_matches('/').to_string(),
            http,
        }
    }

    /// `GET /admin/v1{path}` with the token, not sent.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}/admin/v1{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// `POST /admin/v1{path}` with the token, not sent.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/admin/v1{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// `GET /admin/v1{path}`: asserts 200, returns the JSON answer.
    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }

    /// `POST /admin/v1{path}` with `body`: asserts success, returns the JSON answer (the text as a
    /// JSON string when it is not JSON).
    pub async fn post_json(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.post_answer(path, body).await;
        assert!(status.is_success(), "{path}: {status} {answer}");
        answer
    }

    /// `POST /admin/v1{path}` with `body`: asserts `201 Created`, returns the JSON answer.
    pub async fn post_created(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.post_answer(path, body).await;
        assert_eq!(status, 201, "{path}: {answer}");
        answer
    }

    async fn post_answer(&self, path: &str, body: Value) -> (reqwest::StatusCode, Value) {
        let r = self
            .post(path)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        let answer = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, answer)
    }

    /// Publishes `bulletin` (a whole JSON body); asserts 201.
    pub async fn publish_bulletin(&self, bulletin: Value) {
        self.post_created("/bulletins", bulletin).await;
    }

    /// Publishes bulletin `id` (title `bulletin {id}`, severity high, fixed in 5.37.2, body
    /// `<h1>{id}</h1>`) for the `affected` range; asserts 201.
    pub async fn add_bulletin(&self, id: &str, affected: &str) {
        self.publish_bulletin(json!({
            "id": id, "title": format!("bulletin {id}"), "severity": "high",
            "affected": affected, "fixed_in": "5.37.2", "body": format!("<h1>{id}</h1>")
        }))
        .await;
    }

    /// Retracts bulletin `id`; asserts success.
    pub async fn retract(&self, id: &str) {
        let r = self
            .post(&format!("/bulletins/{id}/retract"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    /// Creates a project named `name`; asserts 201.
    pub async fn create_project(&self, name: &str) -> Project {
        let created = self
            .post_created("/projects", json!({ "name": name }))
            .await;
        let key = created["keys"][0]["public_key"]
            .as_str()
            .unwrap_or_else(|| panic!("project not created: {created}"));
        Project {
            id: created["id"].as_i64().unwrap(),
            key: key.to_string(),
        }
    }

    /// Creates a mobile API key named `name`; asserts 201, returns the key.
    pub async fn create_api_key(&self, name: &str) -> String {
        let created = self.post_created("/apikeys", json!({ "name": name })).await;
        created["key"]
            .as_str()
            .unwrap_or_else(|| panic!("api key not created: {created}"))
            .to_string()
    }
}

/// Blocking [`Admin::get_json`] against the collector at `url`.
pub fn get_admin(url: &str, path: &str) -> Value {
    let admin = Admin::new(url);
    block_on(admin.get_json(path))
}

/// Blocking [`Admin::post_json`] against the collector at `url`.
pub fn post_admin(url: &str, path: &str, body: Value) -> Value {
    let admin = Admin::new(url);
    block_on(admin.post_json(path, body))
}

/// Blocking [`Admin::create_project`] against the collector at `url`.
pub fn create_project(url: &str, name: &str) -> Project {
    let admin = Admin::new(url);
    block_on(admin.create_project(name))
}

/// Blocking [`Admin::create_api_key`] against the collector at `url`.
pub fn create_api_key(url: &str, name: &str) -> String {
    let admin = Admin::new(url);
    block_on(admin.create_api_key(name))
}
