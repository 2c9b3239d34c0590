//! Functions: a mutable `search_path`, SECURITY DEFINER functions clients can call.

use crate::catalog::{ANON, AUTHENTICATED, Catalog};
use crate::check::Check;
use crate::finding::Finding;
use crate::severity::Severity;

pub(super) fn check(catalog: &Catalog, findings: &mut Vec<Finding>) {
    for function in &catalog.functions {
        let object = function.object();
        let signature = function.sql_signature();
        let fixed_path = function
            .config
            .iter()
            .any(|c| c.to_ascii_lowercase().starts_with("search_path="));
        if !fixed_path {
            let (severity, why) = if function.security_definer {
                (
                    Severity::High,
                    "it is SECURITY DEFINER, so a caller who puts an object of the same name earlier on the search_path runs code with the owner's privileges (and past RLS)",
                )
            } else {
                (
                    Severity::Low,
                    "what its unqualified names resolve to depends on the caller's search_path",
                )
            };
            findings.push(Finding::new(
                Check::FunctionSearchPathMutable,
                severity,
                &object,
                format!("Function has no fixed search_path: {why}."),
                format!(
                    "ALTER {signature} SET search_path = '';  -- then schema-qualify the names in its body"
                ),
            ));
        }
        if !function.security_definer || function.is_trigger {
            continue;
        }
        for (role, check, severity, how) in [
            (
                ANON,
                Check::AnonSecurityDefinerFunctionExecutable,
                Severity::High,
                "any unauthenticated caller",
            ),
            (
                AUTHENTICATED,
                Check::AuthenticatedSecurityDefinerFunctionExecutable,
                Severity::Medium,
                "any signed-in user of any org",
            ),
        ] {
            if function.executable_by.iter().any(|r| r == role) {
                findings.push(Finding::new(
                    check,
                    severity,
                    &object,
                    format!(
                        "SECURITY DEFINER function executable by {role}: it runs as its owner and bypasses RLS, so {how} can reach every org's rows through it."
                    ),
                    format!(
                        "REVOKE EXECUTE ON {signature} FROM PUBLIC, {role};  -- or make it SECURITY INVOKER"
                    ),
                ));
            }
        }
    }
}
