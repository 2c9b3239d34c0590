//! Small helpers on connection strings (URL form `postgres://…` and key/value form `host=… …`).

/// Returns `conninfo` pointing at database `dbname` instead of its own.
///
/// `dbname` must be a plain identifier (`[A-Za-z0-9_]`); the testkit only ever passes names it
/// generated itself.
pub(crate) fn with_dbname(conninfo: &str, dbname: &str) -> String {
    debug_assert!(
        dbname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    );
    let trimmed = conninfo.trim();
    for scheme in ["postgresql://", "postgres://"] {
        if let Some(rest) = trimmed.strip_prefix(scheme) {
            // The authority ends at the first '/' (path) or '?' (query).
            let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, after) = rest.split_at(authority_end);
            let query = after.find('?').map_or("", |i| &after[i..]);
            return format!("{scheme}{authority}/{dbname}{query}");
        }
    }
    // Key/value form: a later keyword overrides an earlier one.
    if trimmed.is_empty() {
        format!("dbname={dbname}")
    } else {
        format!("{trimmed} dbname={dbname}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dbname_of(conninfo: &str) -> Option<String> {
        let config: tokio_postgres::Config = conninfo.parse().unwrap();
        config.get_dbname().map(str::to_owned)
    }

    #[test]
    fn replaces_the_path_of_a_url() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/t1",
            ),
            (
                "postgresql://u:p%2Fw@h:1/db?sslmode=disable&application_name=x",
                "postgresql://u:p%2Fw@h:1/t1?sslmode=disable&application_name=x",
            ),
            ("postgres://h", "postgres://h/t1"),
            (
                "postgres://h?connect_timeout=3",
                "postgres://h/t1?connect_timeout=3",
            ),
            ("postgres://h/", "postgres://h/t1"),
        ];
        for (input, expected) in cases {
            let output = with_dbname(input, "t1");
            assert_eq!(output, expected);
            assert_eq!(dbname_of(&output).as_deref(), Some("t1"));
        }
    }

    #[test]
    fn appends_to_key_value_form() {
        let output = with_dbname(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
            "t1",
        );
        assert_eq!(dbname_of(&output).as_deref(), Some("t1"));
        assert_eq!(with_dbname("", "t1"), "dbname=t1");
    }
}
