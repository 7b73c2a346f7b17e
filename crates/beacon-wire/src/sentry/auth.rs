//! Sentry authentication: `X-Sentry-Auth` / `Authorization: Sentry …` header values, `sentry_key` query
//! parameters, and DSNs (`https://<public key>@<host>/<project id>`).

use crate::FieldError;

/// A public key: 32 lower-case hex characters.
pub fn is_public_key(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// The `sentry_key` of a `Sentry sentry_key=…, sentry_version=7, …` header value.
pub fn key_from_header(value: &str) -> Result<String, FieldError> {
    let rest = value
        .trim()
        .strip_prefix("Sentry ")
        .or_else(|| value.trim().strip_prefix("sentry "))
        .ok_or_else(|| FieldError::new("auth", "the header must start with \"Sentry \""))?;
    for part in rest.split(',') {
        if let Some((k, v)) = part.trim().split_once('=')
            && k.trim() == "sentry_key"
        {
            return Ok(v.trim().to_string());
        }
    }
    Err(FieldError::new("auth", "no sentry_key in the header"))
}

/// A parsed DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    pub public_key: String,
    pub host: String,
    pub project_id: u64,
}

/// Parses `scheme://key[:secret]@host[:port]/[path/]project_id`.
pub fn parse_dsn(dsn: &str) -> Result<Dsn, FieldError> {
    let bad = |why: &str| FieldError::new("dsn", format!("{why}: {dsn:?}"));
    let (_, rest) = dsn.split_once("://").ok_or_else(|| bad("not a url"))?;
    let (user, rest) = rest.split_once('@').ok_or_else(|| bad("no public key"))?;
    let public_key = user.split(':').next().unwrap_or_default().to_string();
    let (host, path) = rest.split_once('/').ok_or_else(|| bad("no project id"))?;
    let project_id = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| bad("the project id is not a number"))?;
    Ok(Dsn {
        public_key,
        host: host.to_string(),
        project_id,
    })
}

/// The DSN a project key is reached with.
pub fn format_dsn(scheme: &str, public_key: &str, host: &str, project_id: u64) -> String {
    format!("{scheme}://{public_key}@{host}/{project_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_dsn() {
        let key = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            key_from_header(&format!(
                "Sentry sentry_key={key}, sentry_version=7, sentry_client=sentry.python/2.0"
            ))
            .unwrap(),
            key
        );
        assert!(key_from_header("Bearer x").is_err());
        assert!(key_from_header("Sentry sentry_version=7").is_err());
        let d = parse_dsn(&format!("https://{key}@beacon.example:8443/42")).unwrap();
        assert_eq!(
            (d.public_key.as_str(), d.host.as_str(), d.project_id),
            (key, "beacon.example:8443", 42)
        );
        assert_eq!(
            parse_dsn(&format!("http://{key}:secret@h/sub/7"))
                .unwrap()
                .project_id,
            7
        );
        assert!(parse_dsn("https://h/1").is_err());
        assert!(is_public_key(key) && !is_public_key("XYZ"));
    }
}
