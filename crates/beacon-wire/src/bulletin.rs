//! Security bulletins: what a vendor publishes and which versions each one applies to.

use crate::FieldError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Longest bulletin body accepted (HTML).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Longest title accepted.
pub const MAX_TITLE_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        match s {
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            other => Err(FieldError::new(
                "severity",
                format!("must be low, medium, high or critical, got {other:?}"),
            )),
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bulletin as submitted to the admin API (`POST /admin/v1/bulletins`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBulletin {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    /// A semver requirement on `X.Y.Z`, e.g. `>=5.30.0, <5.37.2`.
    pub affected: String,
    #[serde(default)]
    pub fixed_in: Option<String>,
    /// HTML served at `/bulletins/{id}`.
    pub body: String,
    /// Defaults to the time the collector receives it.
    #[serde(default)]
    pub published_at: Option<DateTime<Utc>>,
}

impl NewBulletin {
    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
        {
            return Err(FieldError::new(
                "id",
                format!(
                    "must be 1 to 64 characters [A-Za-z0-9._-], got {:?}",
                    self.id
                ),
            ));
        }
        let title = self.title.trim();
        if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
            return Err(FieldError::new(
                "title",
                format!("must be 1 to {MAX_TITLE_CHARS} characters"),
            ));
        }
        parse_affected(&self.affected)?;
        if let Some(fixed) = &self.fixed_in {
            semver::Version::parse(fixed).map_err(|e| {
                FieldError::new("fixed_in", format!("must be a version X.Y.Z: {e}"))
            })?;
        }
        if self.body.trim().is_empty() || self.body.len() > MAX_BODY_BYTES {
            return Err(FieldError::new(
                "body",
                format!("must be non-empty HTML of at most {MAX_BODY_BYTES} bytes"),
            ));
        }
        Ok(())
    }
}

/// Parses an `affected` requirement such as `>=5.30.0, <5.37.2`.
pub fn parse_affected(s: &str) -> Result<semver::VersionReq, FieldError> {
    if s.trim().is_empty() || s.trim() == "*" {
        return Err(FieldError::new(
            "affected",
            "must name a version range such as \">=5.30.0, <5.37.2\"; a bulletin for every version is not accepted",
        ));
    }
    semver::VersionReq::parse(s).map_err(|e| {
        FieldError::new(
            "affected",
            format!("is not a semver requirement ({e}); example: \">=5.30.0, <5.37.2\""),
        )
    })
}

/// A stored bulletin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bulletin {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub affected: String,
    pub fixed_in: Option<String>,
    pub body: String,
    pub published_at: DateTime<Utc>,
    pub retracted_at: Option<DateTime<Utc>>,
}

impl Bulletin {
    /// Builds a stored bulletin from a validated submission.
    pub fn from_new(new: NewBulletin, now: DateTime<Utc>) -> Result<Self, FieldError> {
        new.validate()?;
        Ok(Bulletin {
            id: new.id,
            title: new.title.trim().to_string(),
            severity: new.severity,
            affected: new.affected,
            fixed_in: new.fixed_in,
            body: new.body,
            published_at: new.published_at.unwrap_or(now),
            retracted_at: None,
        })
    }

    /// The parsed `affected` requirement. Stored bulletins were validated, so this only fails on a
    /// corrupted row, which then matches nothing.
    pub fn requirement(&self) -> Option<semver::VersionReq> {
        parse_affected(&self.affected).ok()
    }

    /// Whether this bulletin is live and covers `version`.
    pub fn applies_to(&self, version: &semver::Version) -> bool {
        self.retracted_at.is_none() && self.requirement().is_some_and(|r| r.matches(version))
    }

    /// The `/security` answer element for a caller on `version`.
    pub fn notice_for(&self, version: &semver::Version) -> crate::security::BulletinNotice {
        crate::security::BulletinNotice {
            id: self.id.clone(),
            applies_to_version: version.to_string(),
            severity: self.severity,
            title: self.title.clone(),
            fixed_in: self.fixed_in.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new() -> NewBulletin {
        NewBulletin {
            id: "BSA-2026-0001".into(),
            title: "Remote code execution".into(),
            severity: Severity::High,
            affected: ">=5.30.0, <5.37.2".into(),
            fixed_in: Some("5.37.2".into()),
            body: "<p>upgrade</p>".into(),
            published_at: None,
        }
    }

    #[test]
    fn matches_its_range_only() {
        let b = Bulletin::from_new(new(), Utc::now()).unwrap();
        for (v, hit) in [
            ("5.30.0", true),
            ("5.37.1", true),
            ("5.37.2", false),
            ("5.29.9", false),
            ("6.0.0", false),
        ] {
            assert_eq!(
                b.applies_to(&semver::Version::parse(v).unwrap()),
                hit,
                "{v}"
            );
        }
        let mut retracted = b.clone();
        retracted.retracted_at = Some(Utc::now());
        assert!(!retracted.applies_to(&semver::Version::new(5, 31, 0)));
    }

    #[test]
    fn invalid_fields_are_refused() {
        type Mutation = Box<dyn Fn(&mut NewBulletin)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|b| b.id = "has space".into()), "id"),
            (Box::new(|b| b.id = String::new()), "id"),
            (Box::new(|b| b.title = " ".into()), "title"),
            (Box::new(|b| b.affected = "=>5.30.0".into()), "affected"),
            (Box::new(|b| b.affected = "five".into()), "affected"),
            (Box::new(|b| b.affected = "*".into()), "affected"),
            (Box::new(|b| b.fixed_in = Some("5.37".into())), "fixed_in"),
            (Box::new(|b| b.body = String::new()), "body"),
        ];
        for (mutate, field) in cases {
            let mut b = new();
            mutate(&mut b);
            assert_eq!(b.validate().unwrap_err().field, field);
        }
        assert!(new().validate().is_ok());
    }
}
