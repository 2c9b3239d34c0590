//! The deployment environment, parsed fail-closed.

use std::fmt;

/// Name of the environment variable [`Environment::from_env`] reads by default.
pub const DEFAULT_ENV_VAR: &str = "APP_ENV";

/// Where the service runs. Decides how strict verification is.
///
/// Parsing is fail-closed: an unset, empty or unknown value means [`Environment::Production`].
///
/// ```
/// use tenant_guard_core::Environment;
///
/// assert_eq!(Environment::parse("development"), Environment::Development);
/// assert_eq!(Environment::parse("TEST"), Environment::Test);
/// // Anything else is production, including typos.
/// assert_eq!(Environment::parse("dev"), Environment::Production);
/// assert_eq!(Environment::parse(""), Environment::Production);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Environment {
    /// A developer's machine. The only environment that may opt in to insecure conveniences.
    Development,
    /// Automated tests. Verification is as strict as in production.
    Test,
    /// Anything that is not explicitly development or test.
    #[default]
    Production,
}

impl Environment {
    /// Parses a value case-insensitively (surrounding whitespace ignored); unknown means production.
    pub fn parse(value: &str) -> Self {
        let value = value.trim();
        if value.eq_ignore_ascii_case("development") {
            Self::Development
        } else if value.eq_ignore_ascii_case("test") {
            Self::Test
        } else {
            Self::Production
        }
    }

    /// Reads the environment from the process environment variable `var` (e.g. [`DEFAULT_ENV_VAR`]).
    ///
    /// Unset, non-UTF-8 or unknown values mean production.
    pub fn from_env_var(var: &str) -> Self {
        std::env::var(var).map_or(Self::Production, |v| Self::parse(&v))
    }

    /// Reads `APP_ENV` ([`DEFAULT_ENV_VAR`]).
    pub fn from_env() -> Self {
        Self::from_env_var(DEFAULT_ENV_VAR)
    }

    /// The canonical lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
        }
    }

    /// `true` only for [`Environment::Development`].
    pub fn is_development(self) -> bool {
        self == Self::Development
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_is_fail_closed() {
        for (input, want) in [
            ("development", Environment::Development),
            ("  Development ", Environment::Development),
            ("test", Environment::Test),
            ("production", Environment::Production),
            ("prod", Environment::Production),
            ("dev", Environment::Production),
            ("developmentx", Environment::Production),
            ("", Environment::Production),
        ] {
            assert_eq!(Environment::parse(input), want, "{input:?}");
        }
    }

    #[test]
    fn unset_variable_is_production() {
        assert_eq!(
            Environment::from_env_var("TENANT_GUARD_SURELY_UNSET_VARIABLE"),
            Environment::Production
        );
    }
}
