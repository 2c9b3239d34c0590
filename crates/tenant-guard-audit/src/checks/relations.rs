//! Views, materialized views and foreign tables that read past RLS.

use crate::catalog::Catalog;
use crate::check::Check;
use crate::config::AuditConfig;
use crate::finding::Finding;
use crate::severity::Severity;
use crate::sql;

pub(super) fn check(catalog: &Catalog, config: &AuditConfig, findings: &mut Vec<Finding>) {
    for relation in &catalog.relations {
        if config.is_allowed(&relation.schema, &relation.name) {
            continue;
        }
        let name = sql::qualified(&relation.schema, &relation.name);
        let readers = relation.readers.join(", ");
        match relation.kind {
            'v' if !relation.security_invoker && !relation.rls_tables.is_empty() => {
                let severity = if relation.readers.is_empty() {
                    Severity::Medium
                } else {
                    Severity::High
                };
                let who = if relation.readers.is_empty() {
                    String::new()
                } else {
                    format!(" Readable by {readers}.")
                };
                findings.push(Finding::new(
                    Check::SecurityDefinerView,
                    severity,
                    relation.object(),
                    format!(
                        "View reads {} with its owner's rights (not security_invoker), so their policies are checked against the owner, not the caller: it returns every org's rows.{who}",
                        relation.rls_tables.join(", ")
                    ),
                    format!("ALTER VIEW {name} SET (security_invoker = true);"),
                ));
            }
            'm' | 'f' if !relation.readers.is_empty() => {
                let (check, what) = if relation.kind == 'm' {
                    (Check::MaterializedViewExposed, "Materialized view")
                } else {
                    (Check::ForeignTableExposed, "Foreign table")
                };
                findings.push(Finding::new(
                    check,
                    Severity::Medium,
                    relation.object(),
                    format!(
                        "{what} readable by {readers}: it has no Row Level Security, so every reader sees every row."
                    ),
                    format!(
                        "REVOKE SELECT ON {name} FROM {};  -- expose it through a security_invoker view or function instead",
                        relation
                            .readers
                            .iter()
                            .map(|r| if r == "public" { "PUBLIC".to_owned() } else { sql::ident(r) })
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            _ => {}
        }
    }
}
