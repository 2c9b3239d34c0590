//! `tenant-guard`: command-line tools for tenant-guard. `tenant-guard audit` checks a live
//! database for multi-tenant Row Level Security mistakes and exits non-zero when it finds one at
//! or above `--fail-on`.
#![forbid(unsafe_code)]

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tenant_guard_audit::{AuditConfig, Progress, Report, Severity};

/// Exit code when findings at or above `--fail-on` exist.
const EXIT_FINDINGS: u8 = 1;
/// Exit code when the audit could not run (bad arguments, no connection, a failed query).
const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "tenant-guard",
    version,
    about = "Tools for multi-tenant PostgreSQL with Row Level Security"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Audit a live database for tenant-isolation mistakes (RLS, policies, grants, tenant
    /// columns, functions, views, the login's powers) and optionally probe isolation.
    ///
    /// Exit code: 0 when no finding reaches --fail-on, 1 when one does, 2 when the audit could
    /// not run (bad arguments, no connection, TLS refused, a failed query). The report is
    /// written to stdout in every case but 2.
    ///
    /// TLS: sslmode (disable, prefer, require, verify-ca, verify-full) and sslrootcert in the
    /// URL, as libpq; use ?sslmode=verify-full for a managed database.
    Audit(AuditArgs),
}

#[derive(Debug, Args)]
struct AuditArgs {
    /// PostgreSQL connection string (postgres://user:password@host:port/db or key=value form).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,

    /// Schema to audit (repeatable).
    #[arg(long = "schema", value_name = "SCHEMA", default_value = "public")]
    schemas: Vec<String>,

    /// Name of the tenant column (repeatable, e.g. org_id, tenant_id, workspace_id).
    #[arg(
        long = "tenant-column",
        value_name = "COLUMN",
        default_value = "org_id"
    )]
    tenant_columns: Vec<String>,

    /// A table that is public on purpose: TABLE or SCHEMA.TABLE (repeatable). It gets no
    /// table findings.
    #[arg(long = "allow", value_name = "TABLE")]
    allow: Vec<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,

    /// With --format sarif: the repository file (or directory) results are attached to, e.g.
    /// your migrations directory, so code scanning shows them there. Default: database/<object>.
    #[arg(long, value_name = "PATH")]
    sarif_artifact: Option<String>,

    /// Exit with 1 when a finding of this severity or worse exists (`none`: never).
    #[arg(long, value_name = "SEVERITY", default_value = "high", value_parser = parse_fail_on)]
    fail_on: FailOn,

    /// Run the isolation probe: per tenant table, insert a row as org A and check that org B
    /// cannot read, update, delete it or insert into org A. All inside one transaction that is
    /// always rolled back.
    #[arg(long)]
    probe: bool,

    /// Role the probe scopes to, as the guard does.
    #[arg(long, value_name = "ROLE", default_value = "authenticated")]
    probe_role: String,

    /// Check this login role's powers instead of the connecting user's (when CI connects as
    /// another user than the application).
    #[arg(long, value_name = "ROLE")]
    login_role: Option<String>,

    /// Count orphan rows over at most this many rows per table (0: skip the count).
    #[arg(long, value_name = "ROWS", default_value_t = 100_000)]
    orphan_sample: u64,

    /// Statement timeout for the audit's queries, in milliseconds (0: none).
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    statement_timeout: u64,

    /// When to colour the text output.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    color: Color,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// A table for people, with a summary line.
    Text,
    /// The stable JSON report: {"summary": {…}, "findings": [{…}]}.
    Json,
    /// SARIF 2.1.0, for code scanning (GitHub upload-sarif).
    Sarif,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Color {
    /// Colour when stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

#[derive(Debug, Clone, Copy)]
enum FailOn {
    At(Severity),
    Never,
}

fn parse_fail_on(value: &str) -> Result<FailOn, String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(FailOn::Never);
    }
    value
        .parse::<Severity>()
        .map(FailOn::At)
        .map_err(|e| format!("{e}, or none"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Audit(args) => run_audit(args),
    }
}

fn run_audit(args: AuditArgs) -> ExitCode {
    let mut config = AuditConfig::new()
        .schemas(args.schemas.clone())
        .tenant_columns(args.tenant_columns.clone())
        .probe(args.probe)
        .probe_role(args.probe_role.clone())
        .orphan_sample_rows(args.orphan_sample)
        .statement_timeout_ms(args.statement_timeout);
    for table in &args.allow {
        config = config.allow(table.clone());
    }
    if let Some(role) = &args.login_role {
        config = config.login_role(role.clone());
    }

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("could not start the async runtime: {error}")),
    };
    let show_progress = io::stderr().is_terminal();
    let result = runtime.block_on(async {
        let mut client = tenant_guard_audit::connect(&args.database_url).await?;
        let mut progress = |event: Progress<'_>| {
            if show_progress {
                report_progress(event);
            }
        };
        tenant_guard_audit::audit_with_progress(&mut client, &config, &mut progress).await
    });
    if show_progress {
        // Clear the progress line.
        let _ = write!(io::stderr(), "\r\x1b[2K");
    }
    let report = match result {
        Ok(report) => report,
        Err(error) => return fail(&error_chain(&error)),
    };

    let color = match args.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let output = match args.format {
        Format::Json => report.to_json() + "\n",
        Format::Sarif => report.to_sarif(args.sarif_artifact.as_deref()) + "\n",
        Format::Text => report.to_text(color),
    };
    let mut stdout = io::stdout().lock();
    let written = stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush());
    if let Err(error) = written
        && error.kind() != io::ErrorKind::BrokenPipe
    {
        return fail(&format!("could not write the report: {error}"));
    }
    exit_code(&report, args.fail_on)
}

fn exit_code(report: &Report, fail_on: FailOn) -> ExitCode {
    match fail_on {
        FailOn::At(threshold) if report.has_findings_at_or_above(threshold) => {
            ExitCode::from(EXIT_FINDINGS)
        }
        _ => ExitCode::SUCCESS,
    }
}

fn report_progress(event: Progress<'_>) {
    let line = match event {
        Progress::Catalog => "reading the catalogs…".to_owned(),
        Progress::OrphanScan {
            table,
            index,
            total,
        } => format!("counting orphan rows [{}/{total}] {table}", index + 1),
        Progress::Probe {
            table,
            index,
            total,
        } => format!("probing isolation [{}/{total}] {table}", index + 1),
        _ => return,
    };
    let _ = write!(io::stderr(), "\r\x1b[2K{line}");
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

fn fail(message: &str) -> ExitCode {
    let _ = writeln!(io::stderr(), "tenant-guard: error: {message}");
    ExitCode::from(EXIT_ERROR)
}
