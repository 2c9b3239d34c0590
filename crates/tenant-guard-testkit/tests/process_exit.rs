//! A server held in a `static` is never dropped: it must still not outlive the test process, whether
//! the process exits normally or is killed.
//!
//! The test re-runs this test binary as a child (filtering to the `child` test below), reads the
//! server's directory and pids from the child's stdout, and checks they are gone after the child.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::{eventually, external_server, is_live_postgres, postgres_children, postmaster_pid};
use tenant_guard_testkit::TestPostgres;

const MODE_ENV: &str = "TENANT_GUARD_TESTKIT_CHILD_MODE";

/// Runs only as the child of the tests below: starts a server into a static, reports it, then
/// returns once its stdin closes (mode `exit`) or hangs until killed (mode `hang`).
#[test]
fn child() {
    let Ok(mode) = std::env::var(MODE_ENV) else {
        return;
    };
    static SERVER: OnceLock<TestPostgres> = OnceLock::new();
    let server = SERVER.get_or_init(|| TestPostgres::start_local().unwrap());
    let db = server.create_database().unwrap();
    std::mem::forget(db);
    let data_dir = server.data_dir().unwrap();
    let pid = postmaster_pid(data_dir);
    let children: Vec<String> = postgres_children(pid).iter().map(u32::to_string).collect();
    println!(
        "TESTKIT {} {pid} {}",
        data_dir.display(),
        children.join(",")
    );
    if mode == "hang" {
        std::thread::sleep(Duration::from_secs(120));
    } else {
        let _ = std::io::stdin().read_line(&mut String::new());
    }
}

struct Report {
    dir: PathBuf,
    pids: Vec<u32>,
}

fn run_child(mode: &str, kill: bool) -> Report {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--nocapture", "--test-threads=1"])
        .env(MODE_ENV, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut report = None;
    for line in &mut stdout {
        let line = line.unwrap();
        // libtest may print "test child ... " on the same line first.
        if let Some((_, rest)) = line.split_once("TESTKIT ") {
            let mut parts = rest.split(' ');
            let data_dir = PathBuf::from(parts.next().unwrap());
            let mut pids = vec![parts.next().unwrap().parse().unwrap()];
            pids.extend(
                parts
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| p.parse::<u32>().unwrap()),
            );
            report = Some(Report {
                dir: data_dir.parent().unwrap().to_owned(),
                pids,
            });
            break;
        }
    }
    let report = report.expect("the child reported its server");
    // Keep draining, so the child's last lines do not hit a closed pipe.
    std::thread::spawn(move || stdout.for_each(drop));
    assert!(report.dir.exists());
    // The postmaster; its children may include backends of connections already closed.
    assert!(is_live_postgres(report.pids[0]));
    if kill {
        child.kill().unwrap();
        child.wait().unwrap();
    } else {
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
    }
    report
}

fn assert_cleaned_up(report: &Report) {
    assert!(
        eventually(Duration::from_secs(10), || !report.dir.exists()),
        "{} survived the process",
        report.dir.display()
    );
    assert!(
        eventually(Duration::from_secs(10), || report
            .pids
            .iter()
            .all(|&p| !is_live_postgres(p))),
        "postgres processes {:?} survived the process",
        report.pids
    );
}

#[test]
fn server_in_a_static_does_not_outlive_the_process() {
    if external_server() {
        return;
    }
    let report = run_child("exit", false);
    assert!(
        report.pids.len() > 1,
        "postmaster and its auxiliary processes"
    );
    assert_cleaned_up(&report);
}

#[test]
fn server_does_not_outlive_a_killed_process() {
    if external_server() {
        return;
    }
    let report = run_child("hang", true);
    assert_cleaned_up(&report);
}
