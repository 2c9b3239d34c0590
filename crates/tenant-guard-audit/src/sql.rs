//! Quoting identifiers and literals for the SQL the audit runs and suggests.

/// Every keyword PostgreSQL 15 does not list as unreserved (`SELECT word FROM pg_get_keywords()
/// WHERE catcode <> 'U'`: reserved, reserved-or-type/function, and column-name keywords), the
/// set its own `quote_ident` quotes. Sorted, for the binary search.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// Quotes an identifier when it needs it (`org_id` stays, `Org Id` becomes `"Org Id"`).
pub(crate) fn ident(name: &str) -> String {
    let plain = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && RESERVED.binary_search(&name).is_err();
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `schema.name`, each part quoted when needed: for SQL.
pub(crate) fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// A string literal, as an escape string (`E'…'`, quotes doubled, backslashes escaped): it reads
/// the same whatever the session's `standard_conforming_strings` says (a plain `'…'` does not:
/// with the setting off, a backslash in it escapes the next character).
pub(crate) fn literal(value: &str) -> String {
    format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(ident("org_id"), "org_id");
        assert_eq!(ident("_x1"), "_x1");
        assert_eq!(ident("Org"), "\"Org\"");
        assert_eq!(ident("user"), "\"user\"");
        assert_eq!(ident("1st"), "\"1st\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(ident(""), "\"\"");
        assert_eq!(qualified("public", "order"), "public.\"order\"");
        assert_eq!(literal("it's"), "E'it''s'");
        assert_eq!(literal(r"a\b"), r"E'a\\b'");
        assert_eq!(
            literal(r"x\'; DROP TABLE t; --"),
            r"E'x\\''; DROP TABLE t; --'"
        );
    }

    #[test]
    fn every_keyword_postgres_quotes_is_quoted() {
        assert!(
            RESERVED.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        for word in [
            "all",
            "authorization",
            "between",
            "binary",
            "concurrently",
            "cross",
            "current_schema",
            "freeze",
            "full",
            "ilike",
            "inner",
            "interval",
            "is",
            "join",
            "left",
            "like",
            "natural",
            "outer",
            "overlaps",
            "right",
            "similar",
            "tablesample",
            "verbose",
            "values",
            "xmltable",
            "time",
            "timestamp",
            "int",
            "integer",
            "char",
            "national",
        ] {
            assert_eq!(ident(word), format!("\"{word}\""), "{word}");
        }
        // Unreserved keywords are plain identifiers.
        for word in ["name", "role", "type", "text", "key", "data", "action"] {
            assert_eq!(ident(word), word);
        }
    }
}
