//! Helpers of the collector's tests: what a Mattermost server sends.

/// The query a Mattermost server builds (Go's url.Values.Encode: keys sorted).
pub fn mattermost_query(id: &str, version: &str, activated: u64) -> String {
    format!(
        "auc={activated}&b={version}.7777&be=true&db=postgres&id={id}&os=linux&tc=2&uc={}&ut=0",
        activated * 2
    )
}

/// A 26-char diagnostic id from a number.
pub fn server_id(n: u32) -> String {
    format!("{n:0>26}")
}
