//! `beacon serve` as a child process.

use crate::{ADMIN_TOKEN, Admin, TestTls, block_on};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A child process, killed and reaped when dropped: a failing test never leaves one running.
pub struct ChildGuard(pub Child);

impl std::ops::Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `cmd` with stdout piped and reads its stdout until a line containing `marker`; returns
/// the child, the rest of that line (trimmed: e.g. the URL after `listening on `) and the lines
/// before it. Keeps draining stdout afterwards so the child never blocks on a full pipe. With
/// `stderr`, the child's stderr lines are collected there (from the start) instead of inherited.
pub fn spawn_until(
    mut cmd: Command,
    marker: &str,
    stderr: Option<Arc<Mutex<Vec<String>>>>,
) -> std::io::Result<(ChildGuard, String, Vec<String>)> {
    cmd.stdout(Stdio::piped()).stderr(if stderr.is_some() {
        Stdio::piped()
    } else {
        Stdio::inherit()
    });
    let mut child = ChildGuard(cmd.spawn()?);
    if let (Some(sink), Some(pipe)) = (stderr.clone(), child.0.stderr.take()) {
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
    }
    let mut reader = BufReader::new(child.0.stdout.take().expect("piped stdout"));
    let mut before = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            let log = stderr
                .map(|s| s.lock().unwrap().clone())
                .unwrap_or_default();
            return Err(std::io::Error::other(format!(
                "exited before printing {marker:?}: stdout {before:?}, stderr {log:?}"
            )));
        }
        if let Some(pos) = line.find(marker) {
            let rest = line[pos + marker.len()..].trim().to_string();
            std::thread::spawn(move || for _ in reader.lines() {});
            return Ok((child, rest, before));
        }
        before.push(line);
    }
}

/// `beacon serve` on a free loopback port, started by [`ServeBuilder::start`] once it printed its
/// address.
pub struct BeaconProcess {
    pub child: ChildGuard,
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`, as printed.
    pub url: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// What it printed on stdout before its address.
    pub stdout_lines: Vec<String>,
    /// Its stderr lines, when captured ([`ServeBuilder::capture_stderr`]).
    pub log: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

/// How to start a [`BeaconProcess`].
pub struct ServeBuilder {
    bin: PathBuf,
    data_dir: PathBuf,
    envs: Vec<(String, String)>,
    limits: Option<String>,
    capture_stderr: bool,
    tls: Option<reqwest::Certificate>,
}

impl ServeBuilder {
    /// Sets an environment variable (`BEACON_LOG=warn` is set unless overridden here).
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        let value = value.as_ref().to_string_lossy().into_owned();
        self.envs.push((key.to_string(), value));
        self
    }

    /// Sets each `(key, value)`.
    pub fn envs(mut self, envs: &[(&str, &str)]) -> Self {
        for (k, v) in envs {
            self = self.env(k, v);
        }
        self
    }

    /// `BEACON_ADMIN_TOKEN=`[`ADMIN_TOKEN`].
    pub fn admin_token(self) -> Self {
        self.env("BEACON_ADMIN_TOKEN", ADMIN_TOKEN)
    }

    /// Stores in `pg` (`BEACON_STORE_URL`) instead of SQLite.
    pub fn postgres(self, pg: &crate::TestPg) -> Self {
        self.env("BEACON_STORE_URL", &pg.url)
    }

    /// Serves HTTPS with the test certificate; [`BeaconProcess::admin`] trusts its CA.
    pub fn tls(mut self, tls: &TestTls) -> Self {
        self = self
            .env("BEACON_TLS_CERT", &tls.cert_file)
            .env("BEACON_TLS_KEY", &tls.key_file);
        self.tls = Some(tls.ca_certificate());
        self
    }

    /// Runs it through `sh -c "{limits}; exec beacon serve …"`, e.g. `ulimit -n 1024; ulimit -v N`.
    pub fn limits(mut self, limits: &str) -> Self {
        self.limits = Some(limits.to_string());
        self
    }

    /// Collects its stderr in [`BeaconProcess::log`] instead of passing it through.
    pub fn capture_stderr(mut self) -> Self {
        self.capture_stderr = true;
        self
    }

    /// Starts it and waits (bounded by the process: it prints its address or exits) until it listens.
    pub fn start(self) -> BeaconProcess {
        crate::install_crypto();
        let mut cmd = match &self.limits {
            Some(limits) => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c")
                    .arg(format!("{limits}; exec \"$0\" \"$@\""))
                    .arg(&self.bin);
                cmd
            }
            None => Command::new(&self.bin),
        };
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&self.data_dir)
            .env("BEACON_LOG", "warn");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let (child, url, stdout_lines) = spawn_until(
            cmd,
            "beacon collector listening on ",
            self.capture_stderr.then(|| log.clone()),
        )
        .unwrap_or_else(|e| panic!("beacon serve: {e}"));
        let http = match self.tls {
            Some(ca) => reqwest::Client::builder()
                .tls_certs_only([ca])
                .build()
                .expect("client trusting the test ca"),
            None => reqwest::Client::new(),
        };
        let addr = url.split_once("://").map_or(&*url, |(_, a)| a).to_string();
        BeaconProcess {
            child,
            url,
            addr,
            stdout_lines,
            log,
            http,
        }
    }
}

impl BeaconProcess {
    /// `bin serve --listen 127.0.0.1:0 --data-dir {data_dir}`, to be configured.
    pub fn serve(bin: impl AsRef<Path>, data_dir: impl AsRef<Path>) -> ServeBuilder {
        ServeBuilder {
            bin: bin.as_ref().to_path_buf(),
            data_dir: data_dir.as_ref().to_path_buf(),
            envs: Vec::new(),
            limits: None,
            capture_stderr: false,
            tls: None,
        }
    }

    /// An admin client for it (trusting the test CA when it serves HTTPS).
    pub fn admin(&self) -> Admin {
        Admin::with_client(&self.url, self.http.clone())
    }

    /// Blocking [`Admin::get_json`].
    pub fn get_admin(&self, path: &str) -> Value {
        let admin = self.admin();
        block_on(admin.get_json(path))
    }

    /// Blocking [`Admin::post_json`].
    pub fn post_admin(&self, path: &str, body: Value) -> Value {
        let admin = self.admin();
        block_on(admin.post_json(path, body))
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.0.id()
    }
}
