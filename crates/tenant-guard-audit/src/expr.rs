//! Reading policy expressions as PostgreSQL prints them (`pg_get_expr` with an empty
//! `search_path`, so every function outside `pg_catalog` is schema-qualified: `auth.uid()`).
//!
//! This is deliberately text-based, like splinter: PostgreSQL's printed form is regular enough
//! (it parenthesises every boolean operand and adds `::type` casts), and parsing `pg_node_tree`
//! would tie the audit to one server version.

/// Calls whose value is the same for every row of a statement: the auth helpers and
/// `current_setting`.
const AUTH_CALLS: &[&str] = &[
    "auth.uid()",
    "auth.jwt()",
    "auth.role()",
    "auth.email()",
    "current_setting(",
];

/// `true` for `true`, `(true)`, `1 = 1` and their parenthesised forms.
pub(crate) fn is_constant_true(expr: &str) -> bool {
    let compact: String = expr
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let mut inner = compact.as_str();
    while let Some(stripped) = strip_enclosing_parens(inner) {
        inner = stripped;
    }
    matches!(inner, "true" | "1=1" | "'t'::boolean" | "'true'::boolean")
}

/// Whether `expr` mentions `column` as an identifier (not inside a string literal, so
/// `auth.jwt() ->> 'org_id'` does not count).
pub(crate) fn mentions_column(expr: &str, column: &str) -> bool {
    identifiers(expr).iter().any(|token| match token {
        Ident::Quoted(name) => name == column,
        Ident::Plain(name) => name.eq_ignore_ascii_case(column) && column == column.to_lowercase(),
    })
}

/// Whether `expr` can depend on who is asking: it calls an auth helper, `current_setting`, reads
/// `current_user`/`session_user`, or calls any schema-qualified (non-catalog) function, which
/// may read the session. `org_id IS NOT NULL` cannot: it is the same for every org.
pub(crate) fn reads_session(expr: &str) -> bool {
    let lower = expr.to_ascii_lowercase();
    if [
        "current_setting(",
        "current_user",
        "session_user",
        "current_role",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
    {
        return true;
    }
    // `schema.function(`: an identifier, a dot, an identifier, then a parenthesis.
    let bytes = lower.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'"';
    let mut i = 0;
    while let Some(offset) = lower[i..].find('(') {
        let open = i + offset;
        let mut j = open;
        while j > 0 && is_ident(bytes[j - 1]) {
            j -= 1;
        }
        if j < open && j > 0 && bytes[j - 1] == b'.' {
            let mut k = j - 1;
            while k > 0 && is_ident(bytes[k - 1]) {
                k -= 1;
            }
            if k < j - 1 && !lower[k..j - 1].eq("pg_catalog") {
                return true;
            }
        }
        i = open + 1;
    }
    false
}

/// The auth calls in `expr` that are evaluated per row, i.e. not directly wrapped as
/// `(SELECT auth.uid())`. Splinter's `auth_rls_initplan`, extended to `current_setting`.
pub(crate) fn per_row_auth_calls(expr: &str) -> Vec<&'static str> {
    let lower = expr.to_ascii_lowercase();
    let mut found = Vec::new();
    for call in AUTH_CALLS {
        let mut from = 0;
        while let Some(offset) = lower[from..].find(call) {
            let at = from + offset;
            from = at + call.len();
            if !is_call_start(&lower, at) {
                continue;
            }
            if !is_wrapped(&lower[..at]) && !found.contains(call) {
                found.push(*call);
            }
        }
    }
    found
        .into_iter()
        .map(|call| {
            if call == "current_setting(" {
                "current_setting()"
            } else {
                call
            }
        })
        .collect()
}

/// `expr` with every per-row auth call wrapped as `(SELECT call)`, so it runs once per statement.
pub(crate) fn wrap_per_row_calls(expr: &str) -> String {
    let lower = expr.to_ascii_lowercase();
    // (start, end) byte ranges of the calls to wrap.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for call in AUTH_CALLS {
        let mut from = 0;
        while let Some(offset) = lower[from..].find(call) {
            let at = from + offset;
            from = at + call.len();
            if !is_call_start(&lower, at) || is_wrapped(&lower[..at]) {
                continue;
            }
            let end = if call.ends_with("()") {
                at + call.len()
            } else {
                match closing_paren(&lower, at + call.len()) {
                    Some(close) => close + 1,
                    None => continue,
                }
            };
            spans.push((at, end));
        }
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(expr.len() + spans.len() * 10);
    let mut last = 0;
    for (start, end) in spans {
        if start < last {
            continue;
        }
        out.push_str(&expr[last..start]);
        out.push_str("(SELECT ");
        out.push_str(&expr[start..end]);
        out.push(')');
        last = end;
    }
    out.push_str(&expr[last..]);
    out
}

fn is_call_start(lower: &str, at: usize) -> bool {
    lower[..at]
        .chars()
        .next_back()
        .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
}

/// Whether the call starting right after `before` is the value of a scalar subquery:
/// `(SELECT call …`, also behind opening parentheses (`(SELECT (call ->> 'x'))::uuid`).
fn is_wrapped(before: &str) -> bool {
    let before = before.trim_end_matches(|c: char| c == '(' || c.is_whitespace());
    before.strip_suffix("select").is_some_and(|rest| {
        rest.chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
    })
}

/// The byte offset of the parenthesis closing the one opened just before `from`.
fn closing_paren(text: &str, from: usize) -> Option<usize> {
    let mut depth = 1usize;
    for (i, c, in_literal) in scan(&text[from..]) {
        if in_literal {
            continue;
        }
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(from + i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether `expr` has a top-level `OR` one of whose operands is true when an auth function is
/// NULL: `auth.uid() IS NULL OR …`, `NOT (auth.jwt() IS NOT NULL) OR …`,
/// `current_setting('…', true) IS NULL OR …`. Splinter's `rls_policy_null_auth_disjunct`.
pub(crate) fn has_null_auth_disjunct(expr: &str) -> bool {
    let disjuncts = split_top_level(expr, "or");
    disjuncts.len() > 1 && disjuncts.iter().any(|d| is_null_auth_check(d))
}

/// Whether `expr` reads user-editable metadata: `user_metadata` from the JWT, or
/// `raw_user_meta_data` from `auth.users`. Splinter's `rls_references_user_metadata`.
pub(crate) fn references_user_metadata(expr: &str) -> bool {
    let lower = expr.to_ascii_lowercase();
    (lower.contains("user_metadata")
        && (lower.contains("auth.jwt()") || lower.contains("request.jwt.claim")))
        || lower.contains("raw_user_meta_data")
}

fn is_null_auth_check(disjunct: &str) -> bool {
    let mut text = peel(disjunct);
    let mut negated = false;
    if let Some(rest) = strip_keyword_prefix(text, "not") {
        negated = true;
        text = peel(rest);
    }
    let lower = text.to_ascii_lowercase();
    let subject = if negated {
        lower.strip_suffix("is not null")
    } else {
        lower
            .strip_suffix("is null")
            .filter(|s| !s.trim_end().ends_with("not"))
    };
    subject.is_some_and(contains_nullable_auth_call)
}

fn contains_nullable_auth_call(text: &str) -> bool {
    if ["auth.uid()", "auth.jwt()", "auth.role()", "auth.email()"]
        .iter()
        .any(|call| text.contains(call))
    {
        return true;
    }
    // current_setting(name) raises when unset; only current_setting(name, true) yields NULL.
    let mut from = 0;
    while let Some(offset) = text[from..].find("current_setting(") {
        let start = from + offset + "current_setting(".len();
        let end = text[start..].find(')').map_or(text.len(), |e| start + e);
        if text[start..end].replace(' ', "").ends_with(",true") {
            return true;
        }
        from = end;
    }
    false
}

/// Removes whitespace and every pair of parentheses enclosing the whole text.
fn peel(text: &str) -> &str {
    let mut text = text.trim();
    while let Some(inner) = strip_enclosing_parens(text) {
        text = inner.trim();
    }
    text
}

/// `(x)` → `x` when the first parenthesis closes at the very end.
fn strip_enclosing_parens(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('(')?.strip_suffix(')')?;
    let mut depth = 0usize;
    for (_, c, in_literal) in scan(inner) {
        if in_literal {
            continue;
        }
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth.checked_sub(1)?;
            }
            _ => {}
        }
    }
    (depth == 0).then_some(inner)
}

fn strip_keyword_prefix<'a>(text: &'a str, keyword: &str) -> Option<&'a str> {
    let head = text.get(..keyword.len())?;
    let rest = &text[keyword.len()..];
    (head.eq_ignore_ascii_case(keyword)
        && rest.starts_with(|c: char| c.is_whitespace() || c == '('))
    .then_some(rest)
}

/// Splits `expr` (after peeling enclosing parentheses) at top-level occurrences of `keyword`.
fn split_top_level<'a>(expr: &'a str, keyword: &str) -> Vec<&'a str> {
    let text = peel(expr);
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c, in_literal) in scan(text) {
        if in_literal {
            continue;
        }
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if depth == 0 && c.is_whitespace() => {
                let after = i + 1;
                let end = after + keyword.len();
                let is_keyword = text
                    .get(after..end)
                    .is_some_and(|word| word.eq_ignore_ascii_case(keyword));
                let then_space = text
                    .as_bytes()
                    .get(end)
                    .is_some_and(|b| b.is_ascii_whitespace());
                if is_keyword && then_space {
                    parts.push(&text[start..i]);
                    start = end + 1;
                }
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Characters with their byte offset and whether they are inside a string literal or a quoted
/// identifier (the quotes themselves count as inside).
fn scan(text: &str) -> impl Iterator<Item = (usize, char, bool)> + '_ {
    let mut quote: Option<char> = None;
    text.char_indices().map(move |(i, c)| match quote {
        Some(q) if c == q => {
            // A doubled quote reopens at the next character; close now, reopen then.
            quote = None;
            (i, c, true)
        }
        Some(_) => (i, c, true),
        None if c == '\'' || c == '"' => {
            quote = Some(c);
            (i, c, true)
        }
        None => (i, c, false),
    })
}

#[derive(Debug, PartialEq)]
enum Ident {
    Plain(String),
    Quoted(String),
}

/// The identifiers of `expr`, skipping string literals.
fn identifiers(expr: &str) -> Vec<Ident> {
    let mut tokens = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                // String literal; '' inside is an escaped quote.
                while let Some(d) = chars.next() {
                    if d == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
            }
            '"' => {
                let mut name = String::new();
                while let Some(d) = chars.next() {
                    if d == '"' {
                        if chars.peek() == Some(&'"') {
                            chars.next();
                            name.push('"');
                        } else {
                            break;
                        }
                    } else {
                        name.push(d);
                    }
                }
                tokens.push(Ident::Quoted(name));
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut name = String::from(c);
                while let Some(&d) = chars.peek() {
                    if d.is_alphanumeric() || d == '_' || d == '$' {
                        name.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Ident::Plain(name));
            }
            c if c.is_ascii_digit() => {
                while chars
                    .peek()
                    .is_some_and(|d| d.is_alphanumeric() || *d == '.')
                {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_true_forms() {
        for expr in ["true", "(true)", "(1 = 1)", "((true))", " TRUE "] {
            assert!(is_constant_true(expr), "{expr}");
        }
        for expr in [
            "(org_id IS NOT NULL)",
            "(true AND (org_id = org_id))",
            "(1 = 2)",
            "false",
            "((true) OR (false))",
        ] {
            assert!(!is_constant_true(expr), "{expr}");
        }
    }

    #[test]
    fn column_mentions_skip_literals() {
        let seed_002 = "(org_id = ((auth.jwt() ->> 'organization_id'::text))::uuid)";
        assert!(mentions_column(seed_002, "org_id"));
        assert!(!mentions_column(
            "((auth.jwt() ->> 'org_id'::text) IS NOT NULL)",
            "org_id"
        ));
        assert!(mentions_column(
            "(EXISTS ( SELECT 1 FROM public.m WHERE ((m.workspace_id = projects.workspace_id))))",
            "workspace_id"
        ));
        assert!(!mentions_column("(my_org_id = 1)", "org_id"));
        assert!(mentions_column("(\"OrgId\" = 1)", "OrgId"));
        assert!(!mentions_column("(orgid = 1)", "OrgId"));
        assert!(!mentions_column("('it''s org_id' = x)", "org_id"));
    }

    #[test]
    fn session_dependence() {
        assert!(reads_session("(org_id = ( SELECT auth.uid() AS uid))"));
        assert!(reads_session(
            "(org_id = (current_setting('tenant_guard.org_id'::text, true))::uuid)"
        ));
        assert!(reads_session(
            "(org_id IN ( SELECT public.my_orgs() AS my_orgs))"
        ));
        assert!(reads_session("(owner = CURRENT_USER)"));
        assert!(!reads_session("(org_id IS NOT NULL)"));
        assert!(!reads_session("(pg_catalog.length(name) > 0)"));
        assert!(!reads_session("((m.org_id = t.org_id))"));
    }

    #[test]
    fn per_row_calls() {
        assert_eq!(
            per_row_auth_calls("(user_id = auth.uid())"),
            vec!["auth.uid()"]
        );
        assert!(per_row_auth_calls("(user_id = ( SELECT auth.uid() AS uid))").is_empty());
        assert_eq!(
            per_row_auth_calls(
                "(org_id = (current_setting('tenant_guard.org_id'::text, true))::uuid)"
            ),
            vec!["current_setting()"]
        );
        assert!(
            per_row_auth_calls(
                "(org_id = ( SELECT (current_setting('tenant_guard.org_id'::text, true))::uuid AS current_setting))"
            )
            .is_empty(),
            "a scalar subquery around a cast of the call runs once"
        );
        assert!(
            per_row_auth_calls(
                "(org_id = ( SELECT ((auth.jwt() ->> 'organization_id'::text))::uuid AS uuid))"
            )
            .is_empty()
        );
        assert_eq!(
            per_row_auth_calls("(EXISTS ( SELECT 1 FROM m WHERE (m.user_id = auth.uid())))"),
            vec!["auth.uid()"]
        );
        assert!(
            per_row_auth_calls("(org_id = ( SELECT current_setting('x'::text) AS c))").is_empty()
        );
        assert!(per_row_auth_calls("(org_id = myauth.uid())").is_empty());
        assert_eq!(
            per_row_auth_calls(
                "((auth.jwt() ->> 'org'::text) = ( SELECT auth.uid() AS uid)::text)"
            ),
            vec!["auth.jwt()"]
        );
    }

    #[test]
    fn wraps_per_row_calls() {
        assert_eq!(
            wrap_per_row_calls("(user_id = auth.uid())"),
            "(user_id = (SELECT auth.uid()))"
        );
        assert_eq!(
            wrap_per_row_calls("(org_id = (current_setting('a)b'::text, true))::uuid)"),
            "(org_id = ((SELECT current_setting('a)b'::text, true)))::uuid)"
        );
        let wrapped = "(user_id = ( SELECT auth.uid() AS uid))";
        assert_eq!(wrap_per_row_calls(wrapped), wrapped);
        let both = wrap_per_row_calls("((auth.jwt() ->> 'o'::text) = (auth.uid())::text)");
        assert_eq!(
            both,
            "(((SELECT auth.jwt()) ->> 'o'::text) = ((SELECT auth.uid()))::text)"
        );
        assert!(per_row_auth_calls(&both).is_empty());
    }

    #[test]
    fn null_auth_disjuncts() {
        for expr in [
            "((auth.uid() IS NULL) OR (owner_id = auth.uid()))",
            "((owner_id = auth.uid()) OR (auth.uid() IS NULL))",
            "((NOT (auth.uid() IS NOT NULL)) OR (owner_id = auth.uid()))",
            "(((auth.jwt() ->> 'org'::text) IS NULL) OR (org_id = x))",
            "((current_setting('request.jwt.claim.sub'::text, true) IS NULL) OR (a = b))",
            "((( SELECT auth.uid() AS uid) IS NULL) OR (org_id = org_id))",
        ] {
            assert!(has_null_auth_disjunct(expr), "{expr}");
        }
        for expr in [
            "((auth.uid() IS NOT NULL) AND (owner_id = auth.uid()))",
            "((auth.uid() IS NOT NULL) OR (owner_id = auth.uid()))",
            "((owner_id IS NULL) OR (owner_id = auth.uid()))",
            "((current_setting('x'::text) IS NULL) OR (a = b))",
            "((org_id = x) AND ((auth.uid() IS NULL) OR (a = b)))",
            "(auth.uid() IS NULL)",
            "(('a OR b'::text = x) OR (y = z))",
        ] {
            assert!(!has_null_auth_disjunct(expr), "{expr}");
        }
    }

    #[test]
    fn user_metadata() {
        assert!(references_user_metadata(
            "(((auth.jwt() -> 'user_metadata'::text) ->> 'role'::text) = 'admin'::text)"
        ));
        assert!(references_user_metadata(
            "((current_setting('request.jwt.claims'::text, true))::jsonb -> 'user_metadata') IS NOT NULL"
        ));
        assert!(references_user_metadata(
            "(EXISTS ( SELECT 1 FROM auth.users u WHERE ((u.raw_user_meta_data ->> 'org'::text) = x)))"
        ));
        assert!(!references_user_metadata(
            "((auth.jwt() -> 'app_metadata'::text) ->> 'org_id'::text) = x"
        ));
    }
}
