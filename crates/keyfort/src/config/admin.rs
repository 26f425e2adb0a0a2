//! `[admin]`: where the admin API is served, and how administrator sign-ins are bounded, so
//! that guessing passwords costs an attacker time and cannot cost the server memory.

use std::net::SocketAddr;
use std::time::Duration;

use super::loader::Section;

/// Where the admin API (`/admin/*`) is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminListen {
    /// On the public listener, beside the TPPs' endpoints (`listen = "public"`).
    Public,
    /// On a listener of its own (HTTPS with the server's certificate); the public listener
    /// answers 404 for `/admin/*`. Port 0 picks a free port.
    Separate(SocketAddr),
}

/// Where the admin API listens unless configured: loopback only, so that it is reached from
/// the machine (or through an operator's tunnel), never from the internet by default.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9447";

#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `[admin] listen`.
    pub listen: AdminListen,
    /// Sign-in attempts per second for the whole server, and the burst allowed at once.
    pub sign_in_attempts_per_second: u32,
    pub sign_in_burst: u32,
    /// Failed sign-ins one client address may make per window.
    pub failed_sign_ins_per_address: u32,
    pub failed_sign_ins_window: Duration,
    /// Password checks (Argon2, 19 MiB each) at once, and callers allowed to wait for one.
    pub concurrent_password_checks: usize,
    pub password_check_queue: usize,
}

pub(super) fn read(mut s: Section<'_>) -> AdminConfig {
    let listen = match s.take_described::<String>("listen", "\"public\" or an address:port such as \"127.0.0.1:9447\"")
    {
        None => AdminListen::Separate(DEFAULT_ADMIN_LISTEN.parse().expect("a valid default address")),
        Some(word) if word == "public" => AdminListen::Public,
        Some(address) => match address.parse::<SocketAddr>() {
            Ok(address) => AdminListen::Separate(address),
            Err(_) => {
                s.problem(
                    "listen",
                    format!(
                        "\"{address}\" is neither \"public\" (serve /admin/* on the public listener) nor an \
                         address:port such as \"{DEFAULT_ADMIN_LISTEN}\""
                    ),
                );
                AdminListen::Separate(DEFAULT_ADMIN_LISTEN.parse().expect("a valid default address"))
            }
        },
    };
    AdminConfig {
        listen,
        sign_in_attempts_per_second: s.take_in_range("sign_in_attempts_per_second", 10, 1..=100_000),
        sign_in_burst: s.take_in_range("sign_in_burst", 20, 1..=100_000),
        failed_sign_ins_per_address: s.take_in_range("failed_sign_ins_per_address", 30, 1..=1_000_000),
        failed_sign_ins_window: Duration::from_secs(s.take_in_range(
            "failed_sign_ins_window_seconds",
            900,
            60..=86_400,
        )),
        concurrent_password_checks: s.take_in_range("concurrent_password_checks", 2, 1..=64),
        password_check_queue: s.take_in_range("password_check_queue", 32, 0..=100_000),
    }
}
