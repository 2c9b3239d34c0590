//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::Path;
use std::time::{Duration, Instant};

use tenant_guard_testkit::DATABASE_URL_ENV;

/// Tests of the throwaway server itself are skipped when the suite runs against an external server.
pub fn external_server() -> bool {
    let external = std::env::var_os(DATABASE_URL_ENV).is_some_and(|v| !v.is_empty());
    if external {
        eprintln!("skipped: {DATABASE_URL_ENV} is set, no local server is started");
    }
    external
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    uid_of("self").expect("own /proc status")
}

/// The effective uid of a process, from /proc.
pub fn uid_of(pid: &str) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The postmaster pid of a data directory.
pub fn postmaster_pid(data_dir: &Path) -> u32 {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).expect("postmaster.pid");
    text.lines().next().unwrap().trim().parse().unwrap()
}

/// Whether `pid` is a live (not zombie) postgres process.
pub fn is_live_postgres(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let mut fields = stat.split_whitespace();
    let _pid = fields.next();
    let comm = fields.next().unwrap_or("");
    let state = fields.next().unwrap_or("");
    comm == "(postgres)" && state != "Z"
}

/// The live postgres children of `pid` (the postmaster's backends and auxiliary processes).
pub fn postgres_children(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm has no spaces for postgres.
        let ppid = stat
            .split_whitespace()
            .nth(3)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) && is_live_postgres(child) {
            children.push(child);
        }
    }
    children
}

/// Polls `done` for up to `timeout`.
pub fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
