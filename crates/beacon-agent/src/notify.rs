//! Telling the host's administrators about a security bulletin.

use crate::BoxError;
use beacon_wire::security::BulletinNotice;
use serde::Serialize;

/// A bulletin that applies to this server: the notice from the `/security` answer and the HTML body
/// from `/bulletins/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bulletin {
    #[serde(flatten)]
    pub notice: BulletinNotice,
    /// The bulletin's body (HTML), as the collector serves it.
    pub body_html: String,
}

/// Tells the administrators about a bulletin. Called on a blocking thread; the bulletin is marked as
/// notified only when this returns `Ok`, otherwise it is offered again at the next check.
pub trait Notifier: Send + Sync + 'static {
    fn notify(&self, bulletin: &Bulletin) -> Result<(), BoxError>;
}

impl<F> Notifier for F
where
    F: Fn(&Bulletin) -> Result<(), BoxError> + Send + Sync + 'static,
{
    fn notify(&self, bulletin: &Bulletin) -> Result<(), BoxError> {
        self(bulletin)
    }
}

/// The notifier used when the host gives none: a `warn` log line per bulletin.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn notify(&self, b: &Bulletin) -> Result<(), BoxError> {
        tracing::warn!(
            id = %b.notice.id,
            severity = %b.notice.severity,
            fixed_in = b.notice.fixed_in.as_deref().unwrap_or("-"),
            "security bulletin for this version: {}",
            b.notice.title
        );
        Ok(())
    }
}
