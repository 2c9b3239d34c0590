//! What every adapter declares the same way, written once: the extractor types and the
//! rejection type. An adapter invokes these macros and adds only its framework's trait impls
//! (`FromRequestParts`/`IntoResponse` for axum, `FromRequest`/`ResponseError` for actix-web).

/// Declares an adapter's extractor types, each with the docs given before its name:
/// `Authenticated(pub Principal)` and `CurrentRequestId(pub RequestId)` (both `Deref`), and
/// `TenantDb<M: Mode = ReadWrite>`, a newtype that dereferences to
/// [`tenant_guard_http::TenantDb`](crate::TenantDb) and is built with `TenantDb::from_context`.
///
/// ```
/// mod my_adapter {
///     tenant_guard_http::extractor_types! {
///         /// The verified principal.
///         Authenticated;
///         /// The request id.
///         CurrentRequestId;
///         /// The scoped transaction.
///         TenantDb;
///     }
/// }
/// ```
#[macro_export]
macro_rules! extractor_types {
    (
        $(#[$principal:meta])* Authenticated;
        $(#[$id:meta])* CurrentRequestId;
        $(#[$db:meta])* TenantDb;
    ) => {
        $(#[$principal])*
        #[derive(Debug, Clone)]
        pub struct Authenticated(pub $crate::__private::Principal);

        impl ::core::ops::Deref for Authenticated {
            type Target = $crate::__private::Principal;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        $(#[$id])*
        #[derive(Debug, Clone)]
        pub struct CurrentRequestId(pub $crate::__private::RequestId);

        impl ::core::ops::Deref for CurrentRequestId {
            type Target = $crate::__private::RequestId;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        $(#[$db])*
        #[derive(Debug)]
        pub struct TenantDb<M: $crate::Mode = $crate::ReadWrite>($crate::TenantDb<M>);

        impl<M: $crate::Mode> ::core::ops::Deref for TenantDb<M> {
            type Target = $crate::TenantDb<M>;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        #[allow(dead_code)]
        impl<M: $crate::Mode> TenantDb<M> {
            /// The request's transaction (see [`RequestContext::db`]($crate::RequestContext::db)).
            fn from_context(
                context: &$crate::RequestContext,
            ) -> ::core::result::Result<Self, $crate::GuardRejection> {
                context.db().map(Self)
            }
        }

        #[allow(dead_code)]
        impl Authenticated {
            fn from_context(context: &$crate::RequestContext) -> Self {
                Self(context.principal().clone())
            }
        }

        #[allow(dead_code)]
        impl CurrentRequestId {
            fn from_context(context: &$crate::RequestContext) -> Self {
                Self(context.request_id().clone())
            }
        }
    };
}

/// Declares an adapter's rejection type `$name`, with the docs given before it: a newtype over
/// [`GuardRejection`](crate::GuardRejection) with `From<GuardRejection>`, `From<GuardError>` (so
/// `?` on a statement works in handlers), `Display`/`Error` (the inner one's), `kind()` and
/// `ToErrorResponse`. The adapter adds its framework's response conversion, logging with
/// [`GuardRejection::log`](crate::GuardRejection::log).
///
/// ```
/// mod my_adapter {
///     tenant_guard_http::rejection_type! {
///         /// Why the request could not get what its handler asked for.
///         MyRejection
///     }
/// }
/// ```
#[macro_export]
macro_rules! rejection_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name($crate::GuardRejection);

        impl $name {
            /// What went wrong.
            pub fn kind(&self) -> &$crate::GuardRejection {
                &self.0
            }
        }

        impl ::core::convert::From<$crate::GuardRejection> for $name {
            fn from(rejection: $crate::GuardRejection) -> Self {
                Self(rejection)
            }
        }

        impl ::core::convert::From<$crate::__private::GuardError> for $name {
            fn from(error: $crate::__private::GuardError) -> Self {
                Self($crate::GuardRejection::Guard(error))
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Display::fmt(&self.0, f)
            }
        }

        impl ::std::error::Error for $name {
            fn source(&self) -> ::core::option::Option<&(dyn ::std::error::Error + 'static)> {
                ::std::error::Error::source(&self.0)
            }
        }

        impl $crate::__private::ToErrorResponse for $name {
            fn to_error_response(&self) -> $crate::__private::ErrorResponse {
                $crate::__private::ToErrorResponse::to_error_response(&self.0)
            }
        }
    };
}
