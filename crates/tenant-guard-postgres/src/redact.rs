//! Statement parameters that must never reach a log.
//!
//! tokio-postgres logs every statement's parameters (their `Debug`) at debug level through the
//! `log` crate; an app that bridges `log` into its `tracing` subscriber (tracing-subscriber's
//! `init()` does) would print the verified claims (e-mail, names, metadata) of every request.

use std::error::Error;
use std::fmt;

use bytes::BytesMut;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// A text parameter sent as is, whose `Debug` is `<redacted>`.
pub(crate) struct Redacted<'a>(pub(crate) &'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl ToSql for Redacted<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value_and_the_wire_form_keeps_it() {
        let secret = r#"{"email":"someone@example.com"}"#;
        let param = Redacted(secret);
        assert_eq!(format!("{param:?}"), "<redacted>");
        let params: [&(dyn ToSql + Sync); 1] = [&param];
        assert!(!format!("{params:?}").contains("example.com"));
        let (mut plain, mut redacted) = (BytesMut::new(), BytesMut::new());
        secret.to_sql(&Type::TEXT, &mut plain).unwrap();
        param.to_sql_checked(&Type::TEXT, &mut redacted).unwrap();
        assert_eq!(plain, redacted);
        assert!(<Redacted<'_> as ToSql>::accepts(&Type::TEXT));
        assert!(!<Redacted<'_> as ToSql>::accepts(&Type::INT4));
    }
}
