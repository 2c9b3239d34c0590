//! The client of `scripts/guard-floor.sh`'s "as the library sends it" rows: `N` guarded read-only
//! transactions (`TenantPool::begin` + one query + `commit`), one after the other on a pool of
//! one connection, exactly as a request handler runs them. The script counts the server's
//! instructions under callgrind; this binary only drives the load.
//!
//! ```text
//! guard_floor_client <url> <transactions> <check|none> [limit] [scope settings]
//! ```
//!
//! - `url`: the pool's login (`authenticator`, NOINHERIT, granted `authenticated`);
//! - `check|none`: the pool's `SessionReset` (`Check`, the default, or `DangerousNone`);
//! - `limit`: rows read (`SELECT id, org_id, name FROM items ORDER BY id LIMIT <limit>`, 10);
//! - scope settings: `ScopeSettings` as text (`minimal`, the default, or `legacy`, …).
//!
//! The token is the script's ~1 KB Supabase-shaped claims document, signed and verified with a
//! throwaway HS256 secret, so the principal is what a request would carry.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use tenant_guard::core::scope::ScopeSettings;
use tenant_guard::postgres::{LoginPolicy, ScopeOptions, SessionReset, TenantPool};
use tenant_guard_testkit::TestIssuer;
use uuid::Uuid;

const ORG: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0007);
const USER: &str = "5f1c1d5e-0000-4000-8000-000000000001";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(Ok(n)), Some(reset)) = (
        args.first(),
        args.get(1).map(|n| n.parse::<usize>()),
        args.get(2),
    ) else {
        eprintln!("usage: guard_floor_client <url> <transactions> <check|none> [limit] [settings]");
        return ExitCode::FAILURE;
    };
    let reset = match reset.as_str() {
        "check" => SessionReset::Check,
        "none" => SessionReset::DangerousNone,
        other => {
            eprintln!("unknown session reset {other:?}");
            return ExitCode::FAILURE;
        }
    };
    let limit: u32 = args.get(3).and_then(|l| l.parse().ok()).unwrap_or(10);
    let settings = match args.get(4).map(|s| s.parse::<ScopeSettings>()) {
        None => ScopeSettings::default(),
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(url, n, reset, limit, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guard_floor_client: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    url: &str,
    n: usize,
    reset: SessionReset,
    limit: u32,
    settings: ScopeSettings,
) -> Result<(), Box<dyn std::error::Error>> {
    let issuer = TestIssuer::new();
    let token = issuer.sign(serde_json::json!({
        "sub": USER,
        "role": "authenticated",
        "org_id": ORG.to_string(),
        "email": "someone@example.com",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {"name": "x".repeat(600)},
        "session_id": "abc",
    }));
    let principal = issuer.verifier().verify(&token)?;
    let pool = TenantPool::builder_from_url(url)?
        .max_size(1)
        .login_policy(LoginPolicy::Skip)
        .session_reset(reset)
        .scope_settings(settings)
        .build()?;
    let query = format!("SELECT id, org_id, name FROM items ORDER BY id LIMIT {limit}");
    let mut rows = 0;
    for _ in 0..n {
        let tx = pool
            .begin(&principal, ScopeOptions::default().read_only(true))
            .await?;
        rows += tx.query(&query, &[]).await?.len();
        tx.commit().await?;
    }
    // An awaited read-write transaction flushes the last queued COMMIT (and the session check
    // behind it) before the process exits; both runs of the script's difference end with it.
    let tx = pool.begin(&principal, ScopeOptions::default()).await?;
    tx.query("SELECT 1", &[]).await?;
    tx.commit().await?;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    pool.close();
    if rows != n * limit as usize {
        return Err(format!("read {rows} rows, expected {}", n * limit as usize).into());
    }
    Ok(())
}
