//! Taking libpq's TLS parameters (`sslmode`, `sslrootcert`) out of a connection string before
//! tokio-postgres parses the rest: it knows only `disable`/`prefer`/`require` and no root file.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use super::TlsError;

/// The TLS parameters found in a connection string, and the string without them.
#[derive(Debug, Default)]
pub(crate) struct Split {
    pub(crate) rest: String,
    pub(crate) sslmode: Option<String>,
    pub(crate) sslrootcert: Option<String>,
}

/// Parameters libpq knows that we refuse rather than ignore (client certificates, CRLs): a
/// connection that silently drops them would not be what the URL asked for.
const UNSUPPORTED: &[&str] = &["sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir"];

pub(crate) fn split(url: &str) -> Result<Split, TlsError> {
    let trimmed = url.trim();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        split_url(trimmed)
    } else {
        split_key_value(trimmed)
    }
}

fn take(split: &mut Split, key: &str, value: Cow<'_, str>) -> Result<bool, TlsError> {
    match key {
        "sslmode" => split.sslmode = Some(value.into_owned()),
        "sslrootcert" => split.sslrootcert = Some(value.into_owned()),
        _ if UNSUPPORTED.contains(&key) => {
            return Err(TlsError::Unsupported {
                parameter: key.to_owned(),
            });
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn split_url(url: &str) -> Result<Split, TlsError> {
    let mut out = Split::default();
    let Some((base, query)) = url.split_once('?') else {
        out.rest = url.to_owned();
        return Ok(out);
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode_str(key).decode_utf8_lossy();
        let value = percent_decode_str(value).decode_utf8_lossy();
        if !take(&mut out, &key, value)? {
            kept.push(pair);
        }
    }
    out.rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(out)
}

/// `key=value` pairs separated by spaces; values may be single-quoted with `\'` and `\\`
/// escapes, and spaces may surround `=` (libpq's rules).
fn split_key_value(text: &str) -> Result<Split, TlsError> {
    let mut out = Split::default();
    let mut rest = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            // Not ours to judge: tokio-postgres reports the malformed pair.
            rest.push(key);
            continue;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => {
                        if let Some(c) = chars.next() {
                            value.push(c);
                        }
                    }
                    Some('\'') | None => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        value.push(next);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        if !take(&mut out, &key, Cow::Borrowed(&value))? {
            rest.push(format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
    }
    out.rest = rest.join(" ");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

    const VALUE: &AsciiSet = &CONTROLS.add(b' ').add(b'&').add(b'%').add(b'=');

    fn with_query(url: &str, key: &str, value: &str) -> String {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{key}={}", utf8_percent_encode(value, VALUE))
    }

    #[test]
    fn url_parameters_are_taken_out() {
        let url = with_query(
            "postgres://u:p@db.example.com:5432/app?application_name=x&sslmode=verify-full",
            "sslrootcert",
            "/etc/ssl/my ca.pem",
        );
        let split = split(&url).unwrap();
        assert_eq!(split.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(split.sslrootcert.as_deref(), Some("/etc/ssl/my ca.pem"));
        assert_eq!(
            split.rest,
            "postgres://u:p@db.example.com:5432/app?application_name=x"
        );
        let only = split_url("postgresql://h/db?sslmode=require").unwrap();
        assert_eq!(only.rest, "postgresql://h/db");
        assert_eq!(only.sslmode.as_deref(), Some("require"));
    }

    #[test]
    fn key_value_parameters_are_taken_out() {
        let split = split(
            "host=db user=app password='it\\'s x' sslmode = verify-ca sslrootcert='/a b/ca.pem'",
        )
        .unwrap();
        assert_eq!(split.sslmode.as_deref(), Some("verify-ca"));
        assert_eq!(split.sslrootcert.as_deref(), Some("/a b/ca.pem"));
        let config: tokio_postgres::Config = split.rest.parse().unwrap();
        assert_eq!(config.get_user(), Some("app"));
        assert_eq!(config.get_password(), Some(&b"it's x"[..]));
    }

    #[test]
    fn client_certificates_are_refused() {
        assert!(matches!(
            split("postgres://h/db?sslcert=/c.pem"),
            Err(TlsError::Unsupported { .. })
        ));
        assert!(matches!(
            split("host=h sslkey=/k.pem"),
            Err(TlsError::Unsupported { .. })
        ));
    }

    #[test]
    fn strings_without_tls_parameters_pass_through() {
        let split = split("postgres://h/db").unwrap();
        assert_eq!(split.rest, "postgres://h/db");
        assert!(split.sslmode.is_none() && split.sslrootcert.is_none());
    }
}
