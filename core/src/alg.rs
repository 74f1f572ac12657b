//! The JOSE names of the signature algorithms jwt_rls verifies.
//!
//! A leaf: it uses nothing else of the crate. Error messages, the header
//! parser, the key store and signing all name algorithms, and keeping the
//! table here is what lets `error` describe a key without importing `keys`
//! or `header` (which import `error` for their refusals).

use jsonwebtoken::Algorithm;

/// The algorithms jwt_rls verifies, by their exact JOSE names.
pub const ALGORITHMS: [(&str, Algorithm); 12] = [
    ("HS256", Algorithm::HS256),
    ("HS384", Algorithm::HS384),
    ("HS512", Algorithm::HS512),
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// Exact, case-sensitive lookup of an algorithm name.
pub fn algorithm(name: &str) -> Option<Algorithm> {
    ALGORITHMS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// The JOSE name of an algorithm.
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    ALGORITHMS
        .iter()
        .find(|(_, a)| *a == alg)
        .map(|(n, _)| *n)
        .unwrap_or("unknown")
}
