//! `[metrics]` and `[log]`: how Keyfort can be watched.

use std::net::SocketAddr;

use serde::Deserialize;

use super::loader::Section;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
    /// One INFO line per request (method, route, status, duration, client, request id).
    pub access_log: bool,
}

/// `[metrics] listen`: where Prometheus metrics are served; `None` disables them.
pub(super) fn read_metrics(mut s: Section<'_>) -> Option<SocketAddr> {
    s.take_described("listen", "an address:port such as \"127.0.0.1:9464\"")
}

pub(super) fn read_log(mut s: Section<'_>) -> LogConfig {
    LogConfig {
        format: s.take("format").unwrap_or(LogFormat::Text),
        level: s.take("level").unwrap_or_else(|| "info".to_owned()),
        access_log: s.take("access_log").unwrap_or(true),
    }
}
