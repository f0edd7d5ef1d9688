//! The axum extractor for verified claims (feature `axum`).

use axum::{extract::FromRequestParts, response::IntoResponse};
use http::request::Parts;

use crate::{error::AuthError, layer::JwtClaims};

/// Refusal of the [`JwtClaims`] extractor when the layer did not run or let the
/// request through anonymously: 401.
#[derive(Debug, Clone, Copy)]
pub struct MissingClaims;

impl IntoResponse for MissingClaims {
    fn into_response(self) -> axum::response::Response {
        let rejection = AuthError::Missing.rejection(crate::layer::LAYER, "Bearer", "api", "");
        let response =
            rejection.into_response::<axum::body::Body>(&gateway_layers_core::ProblemJson);
        response.map(axum::body::Body::new)
    }
}

impl<S, C> FromRequestParts<S> for JwtClaims<C>
where
    S: Send + Sync,
    C: Send + Sync + 'static,
{
    type Rejection = MissingClaims;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<JwtClaims<C>>()
            .cloned()
            .ok_or(MissingClaims)
    }
}
