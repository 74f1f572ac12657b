//! The one error type of the core. Every variant maps to a SQLSTATE class in
//! the extension (`Error::class`), and no message ever contains the token or
//! any attacker-chosen string that has not passed `shown()`.

use std::fmt;

use jsonwebtoken::Algorithm;

use crate::header::algorithm_name;
use crate::keys::MAX_KID_BYTES;

/// Which SQLSTATE family an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The input is not a well-formed JWS compact token (SQLSTATE 22023).
    Malformed,
    /// The token is well formed but not acceptable (SQLSTATE 28000).
    Rejected,
    /// A key given to the key store is unusable (SQLSTATE 22023).
    BadKey,
}

/// Which part of the token an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Header,
    Payload,
    Signature,
    /// The JWE segments (RFC 7516 section 7.1) after the header.
    EncryptedKey,
    Iv,
    Ciphertext,
    Tag,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
            Part::EncryptedKey => "encrypted key",
            Part::Iv => "iv",
            Part::Ciphertext => "ciphertext",
            Part::Tag => "tag",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    // --- malformed input -------------------------------------------------
    Empty,
    TooLarge {
        size: usize,
        limit: usize,
    },
    BadCharacter,
    SegmentCount(usize),
    Base64(Part),
    Json(Part, String),
    NotObject(Part),
    DuplicateKey(Part),
    NulCharacter(Part),
    TooDeep(Part),
    HeaderType(&'static str),
    /// A JWE was given and no decryption key is configured and active.
    EncryptedNotAccepted,
    /// A JWE segment has a length its algorithm does not allow.
    JweLength {
        part: Part,
        len: usize,
        expected: usize,
    },
    /// The ECDH-ES ephemeral public key is missing or unusable (the reason).
    BadEpk(&'static str),
    // --- well formed, not acceptable ------------------------------------
    UnsecuredToken,
    UnsupportedAlg(String),
    UnsupportedHeader(&'static str),
    BadTyp(String),
    NoKeys,
    AmbiguousKey(usize),
    UnknownKid(String),
    KeyDisabled(String),
    KeyNotInWindow(String),
    AlgMismatch {
        kid: String,
        key_alg: &'static str,
        token_alg: &'static str,
    },
    BadSignature,
    ClaimType {
        claim: String,
        expected: &'static str,
    },
    MissingClaim(String),
    Expired {
        exp: i64,
        now: i64,
    },
    NotYetValid {
        nbf: i64,
        now: i64,
    },
    IssuedInFuture {
        iat: i64,
        now: i64,
    },
    LifetimeTooLong {
        lifetime: i64,
        max: i64,
    },
    Issuer,
    Audience,
    /// The token carries `aud` and no audience is configured.
    UnexpectedAudience,
    // --- revoked (checked by the extension against its lists) -----------
    /// The token's jti is on the revocation list.
    Revoked,
    /// The token's subject has a cutoff and the token was issued before it.
    RevokedSubject,
    /// The token's subject has a cutoff and the token has no iat.
    RevokedSubjectNoIat,
    /// A token without jti was presented for revocation by jti.
    NoJti,
    // --- encrypted tokens (JWE) ----------------------------------------
    /// The JWE key-management algorithm is not one that is accepted.
    UnsupportedKeyAlg(String),
    /// The JWE content encryption is not one that is accepted.
    UnsupportedEnc(String),
    /// The JWE does not say it holds a JWT (`cty`), so it is not a nested
    /// (signed, then encrypted) token; the cty as given, if a string.
    NotNested(Option<String>),
    /// The decrypted content is itself a JWE.
    NestedJwe,
    UnknownDecryptionKid(String),
    DecryptionKeyDisabled(String),
    DecryptionKeyNotInWindow(String),
    AmbiguousDecryptionKey(usize),
    /// A dir key is bound to another content encryption than the token's.
    EncMismatch {
        kid: String,
        key_enc: &'static str,
        token_enc: &'static str,
    },
    /// Any failure to decrypt: tag, key unwrap, OAEP, padding. One variant
    /// on purpose, so that no caller can tell them apart (no oracle).
    DecryptionFailed,
    // --- key store -------------------------------------------------------
    Key(KeyError),
}

/// Why a key was refused: one variant per problem, with its specifics.
/// `Display` gives the text that follows "invalid key: " in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The format is not `secret`, `pem` or `jwk` (the name as given).
    UnknownFormat(String),
    /// The kid is empty, longer than `MAX_KID_BYTES`, or has a control
    /// character.
    BadKid,
    /// The algorithm name is not one that is verified (the name as given).
    UnknownAlg(String),
    /// A stored secret is not unpadded base64url.
    SecretBase64,
    /// A secret was given for an algorithm that is not HMAC.
    SecretNotHmac(Algorithm),
    /// An HMAC secret shorter than its hash (`min` bytes); `len` is its size.
    SecretTooShort {
        alg: Algorithm,
        min: usize,
        len: usize,
    },
    /// The "secret" is PEM or JWK text: a public key stored as a secret.
    SecretIsKey,
    /// The PEM holds a private key.
    PrivatePem,
    /// A PEM was given for an HMAC algorithm.
    HmacPem,
    /// The PEM cannot be read as a public key of the algorithm's type
    /// (jsonwebtoken's error text).
    BadPem(String),
    /// The RSA public key cannot be decoded (the crypto library's text).
    BadRsa(String),
    /// An RSA modulus of `bits` bits, below `min`.
    RsaTooSmall { min: usize, bits: usize },
    /// The EC key of a PEM is not on the algorithm's curve.
    PemWrongCurve(Algorithm),
    /// An EdDSA key (PEM or JWK) that is not Ed25519.
    NotEd25519,
    /// The JWK text is not a JSON object.
    JwkNotObject,
    /// A non-`oct` JWK carries this private member.
    JwkPrivateMember(&'static str),
    /// The JWK's `alg` member is not the algorithm it is stored for.
    JwkAlgMismatch(Algorithm),
    /// The JWK's `use` is not `sig`.
    JwkNotForSignature,
    /// The JWK does not deserialize (missing or mistyped members).
    JwkMembers,
    /// jsonwebtoken cannot build a key from the JWK (its error text).
    BadJwk(String),
    /// The RSA JWK's `n` is not base64url.
    JwkModulusBase64,
    /// The EC JWK's `crv` is not the algorithm's curve.
    JwkWrongCurve(Algorithm),
    /// The EC JWK's coordinates do not make a point of the curve's size.
    JwkCoordinateLength,
    /// The Ed25519 JWK's `x` is not 32 bytes.
    JwkEd25519Length,
    /// The JWK's key type cannot be used for the algorithm.
    JwkKeyType(Algorithm),
    /// jsonwebtoken refuses to make a verifier (its error text).
    CannotVerify { alg: Algorithm, reason: String },
    /// The JWKS text is not a JSON object.
    JwksNotObject,
    /// The JWKS has no `keys` array.
    JwksNoKeys,
    /// The JWKS key at this index is not an object.
    JwksEntryNotObject(usize),
    /// The JWKS key at this index has no string `kid`.
    JwksEntryNoKid(usize),
    /// The JWKS key with this kid has no `alg` and no curve that implies one.
    JwksEntryNoAlg(String),
    /// The JWKS key with this kid is refused for `error`.
    JwksEntry { kid: String, error: Box<KeyError> },
    /// The JWKS has this kid more than once.
    JwksDuplicateKid(String),
    /// This kid is already stored with a different key (for the extension's
    /// import, which never replaces a key).
    KidTaken(String),
    /// A signing key's private PEM cannot be used for the algorithm (the
    /// reason is jsonwebtoken's or the crypto library's text).
    BadPrivateKey(String),
    /// A signing key's PEM is not a private key.
    NotPrivate,
    /// The crypto library could not generate a key.
    Generate,
    /// No enabled signing key (or none with the kid asked for).
    NoSigningKey,
    // --- JWE keys ----------------------------------------------------------
    /// The key-management algorithm name is not accepted (as given).
    UnknownKeyAlg(String),
    /// The content encryption name is not accepted (as given).
    UnknownEnc(String),
    /// A dir key was given without its content encryption.
    DirNeedsEnc,
    /// A content encryption was given for a key that is not dir.
    EncOnlyForDir,
    /// A symmetric JWE key (A256KW, dir) that is not 32 bytes.
    SecretLength { alg: &'static str, len: usize },
    /// A secret was given for an asymmetric JWE algorithm.
    SecretNotSymmetric(&'static str),
    /// A PEM was given for a symmetric JWE algorithm.
    SecretNotPem(&'static str),
    /// A decryption key given as a public key.
    DecryptionNotPrivate,
    /// The crypto library refuses the private key (its text, never the key).
    BadDecryptionKey(String),
    /// The EC key's curve is not P-256, P-384 or P-521 (as given).
    UnsupportedCurve(String),
    /// The EC private JWK's d does not belong to its x and y.
    EcPublicMismatch,
    /// The JWK's `use` is not `enc`.
    JwkNotForEncryption,
    /// The JWK's `alg` is not the key-management algorithm it is for.
    JwkKeyAlgMismatch(&'static str),
    /// The JWK's key type cannot be used for the key-management algorithm.
    JwkKeyTypeFor(&'static str),
    /// The crypto library could not encrypt a token.
    EncryptFailed,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use KeyError::*;
        match self {
            UnknownFormat(name) => write!(f, "unknown key format {}", shown(name)),
            BadKid => {
                write!(f, "kid must be 1 to {MAX_KID_BYTES} bytes without control characters")
            }
            UnknownAlg(name) => write!(
                f,
                "algorithm {} is not one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA",
                shown(name)
            ),
            SecretBase64 => f.write_str("a stored secret must be unpadded base64url"),
            SecretNotHmac(alg) => {
                write!(f, "a secret can only be an HMAC key, not {}", algorithm_name(*alg))
            }
            SecretTooShort { alg, min, len } => write!(
                f,
                "an {} secret must be at least {min} bytes, this one has {len}",
                algorithm_name(*alg)
            ),
            SecretIsKey => f.write_str(
                "this secret is a PEM or JWK key; store public keys with their own algorithm",
            ),
            PrivatePem => f.write_str("this is a private key; store only the public key"),
            HmacPem => f.write_str("an HMAC key is a secret, not a PEM"),
            BadPem(why) => write!(f, "not a usable public key PEM ({why})"),
            BadRsa(why) => write!(f, "not a usable RSA public key ({why})"),
            RsaTooSmall { min, bits } => {
                write!(f, "RSA keys must have at least {min} bits, this one has {bits}")
            }
            PemWrongCurve(alg) => {
                write!(f, "this EC key is not on the curve of {}", algorithm_name(*alg))
            }
            NotEd25519 => f.write_str("EdDSA keys must be Ed25519"),
            JwkNotObject => f.write_str("the JWK is not a JSON object"),
            JwkPrivateMember(member) => {
                write!(f, "the JWK carries private member \"{member}\"; store only the public key")
            }
            JwkAlgMismatch(alg) => write!(f, "the JWK's alg is not {}", algorithm_name(*alg)),
            JwkNotForSignature => f.write_str("the JWK is not a signature key (use is not \"sig\")"),
            JwkMembers => f.write_str("the JWK has missing or mistyped members"),
            BadJwk(why) => write!(f, "unusable JWK ({why})"),
            JwkModulusBase64 => f.write_str("the JWK's n is not base64url"),
            JwkWrongCurve(alg) => {
                write!(f, "the JWK's curve does not match {}", algorithm_name(*alg))
            }
            JwkCoordinateLength => f.write_str("the JWK's coordinates have the wrong length"),
            JwkEd25519Length => f.write_str("the JWK's x has the wrong length"),
            JwkKeyType(alg) => {
                write!(f, "the JWK's key type cannot be used for {}", algorithm_name(*alg))
            }
            CannotVerify { alg, reason } => {
                write!(f, "the key cannot verify {} ({reason})", algorithm_name(*alg))
            }
            JwksNotObject => f.write_str("the JWKS is not a JSON object"),
            JwksNoKeys => f.write_str("the JWKS has no \"keys\" array"),
            JwksEntryNotObject(i) => write!(f, "key {i} of the JWKS is not an object"),
            JwksEntryNoKid(i) => write!(f, "key {i} of the JWKS has no string kid"),
            JwksEntryNoAlg(kid) => write!(f, "key {} of the JWKS names no alg", shown(kid)),
            JwksEntry { kid, error } => write!(f, "key {} of the JWKS: {error}", shown(kid)),
            JwksDuplicateKid(kid) => write!(f, "the JWKS has kid {} twice", shown(kid)),
            KidTaken(kid) => {
                write!(f, "kid {} already holds a different key; remove it first", shown(kid))
            }
            BadPrivateKey(why) => write!(f, "this private key cannot sign: {why}"),
            NotPrivate => f.write_str("a signing key must be a private key (PKCS#8 or PKCS#1 PEM)"),
            Generate => f.write_str("the crypto library could not generate a key"),
            NoSigningKey => f.write_str("no enabled signing key"),
            UnknownKeyAlg(name) => write!(
                f,
                "key management algorithm {} is not one of RSA-OAEP-256 ECDH-ES ECDH-ES+A256KW A256KW dir",
                shown(name)
            ),
            UnknownEnc(name) => write!(
                f,
                "content encryption {} is not one of A256GCM A128CBC-HS256",
                shown(name)
            ),
            DirNeedsEnc => f.write_str(
                "a dir key must name its content encryption (A256GCM or A128CBC-HS256)",
            ),
            EncOnlyForDir => f.write_str(
                "only a dir key is bound to a content encryption; give none for this algorithm",
            ),
            SecretLength { alg, len } => {
                write!(f, "{alg} keys must be 32 bytes, this one has {len}")
            }
            SecretNotSymmetric(alg) => {
                write!(f, "a secret can only be an A256KW or dir key, not {alg}")
            }
            SecretNotPem(alg) => write!(f, "{alg} keys are secrets, not PEMs"),
            DecryptionNotPrivate => f.write_str(
                "a decryption key must be a private key (PKCS#8 PEM or private JWK)",
            ),
            BadDecryptionKey(why) => write!(f, "this private key cannot decrypt: {why}"),
            UnsupportedCurve(name) => {
                write!(f, "curve {} is not one of P-256 P-384 P-521", shown(name))
            }
            EcPublicMismatch => f.write_str("the JWK's x and y are not the public key of its d"),
            JwkNotForEncryption => {
                f.write_str("the JWK is not an encryption key (use is not \"enc\")")
            }
            JwkKeyAlgMismatch(alg) => write!(f, "the JWK's alg is not {alg}"),
            JwkKeyTypeFor(alg) => write!(f, "the JWK's key type cannot be used for {alg}"),
            EncryptFailed => f.write_str("the crypto library could not encrypt the token"),
        }
    }
}

impl std::error::Error for KeyError {}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Error {
        Error::Key(e)
    }
}

impl Error {
    /// The SQLSTATE family. Exhaustive on purpose: a new variant must be
    /// classified by whoever adds it.
    pub fn class(&self) -> Class {
        use Error::*;
        match self {
            Empty
            | TooLarge { .. }
            | BadCharacter
            | SegmentCount(_)
            | Base64(_)
            | Json(..)
            | NotObject(_)
            | DuplicateKey(_)
            | NulCharacter(_)
            | TooDeep(_)
            | HeaderType(_)
            | EncryptedNotAccepted
            | JweLength { .. }
            | BadEpk(_)
            | NoJti => Class::Malformed,
            UnsecuredToken
            | UnsupportedAlg(_)
            | UnsupportedHeader(_)
            | BadTyp(_)
            | NoKeys
            | AmbiguousKey(_)
            | UnknownKid(_)
            | KeyDisabled(_)
            | KeyNotInWindow(_)
            | AlgMismatch { .. }
            | BadSignature
            | ClaimType { .. }
            | MissingClaim(_)
            | Expired { .. }
            | NotYetValid { .. }
            | IssuedInFuture { .. }
            | LifetimeTooLong { .. }
            | Issuer
            | Audience
            | UnexpectedAudience
            | Revoked
            | RevokedSubject
            | RevokedSubjectNoIat
            | UnsupportedKeyAlg(_)
            | UnsupportedEnc(_)
            | NotNested(_)
            | NestedJwe
            | UnknownDecryptionKid(_)
            | DecryptionKeyDisabled(_)
            | DecryptionKeyNotInWindow(_)
            | AmbiguousDecryptionKey(_)
            | EncMismatch { .. }
            | DecryptionFailed => Class::Rejected,
            Key(_) => Class::BadKey,
        }
    }

    /// Short, stable message (Postgres style: lower case, no period).
    pub fn message(&self) -> String {
        use Error::*;
        match self {
            Empty => "token is empty".into(),
            TooLarge { .. } => "token is too large".into(),
            BadCharacter => "token contains characters outside base64url and '.'".into(),
            SegmentCount(5) => "token is a JWE (encrypted token), which is not supported".into(),
            SegmentCount(_) => "token is not a JWS compact serialization".into(),
            Base64(p) => format!("token {p} is not canonical unpadded base64url"),
            Json(p, _) => format!("token {p} is not valid JSON"),
            NotObject(p) => format!("token {p} is not a JSON object"),
            DuplicateKey(p) => format!("token {p} has a duplicate member name"),
            NulCharacter(p) => format!("token {p} contains a NUL character"),
            TooDeep(p) => format!("token {p} is nested too deeply"),
            HeaderType(_) => "token header has a member of the wrong type".into(),
            UnsecuredToken => "unsecured token (alg \"none\") is never accepted".into(),
            UnsupportedAlg(_) => "token algorithm is not supported".into(),
            UnsupportedHeader(_) => "token header uses an unsupported extension".into(),
            BadTyp(_) => "token type is not JWT".into(),
            NoKeys => "no verification key is configured".into(),
            AmbiguousKey(_) => "token has no kid and more than one key is active".into(),
            UnknownKid(_) => "token kid names no known key".into(),
            KeyDisabled(_) => "token was signed with a disabled key".into(),
            KeyNotInWindow(_) => "token was signed with a key outside its validity window".into(),
            AlgMismatch { .. } => "token algorithm does not match its key".into(),
            BadSignature => "token signature is invalid".into(),
            ClaimType { .. } => "token claim has the wrong JSON type".into(),
            MissingClaim(_) => "token lacks a required claim".into(),
            Expired { .. } => "token is expired".into(),
            NotYetValid { .. } => "token is not valid yet".into(),
            IssuedInFuture { .. } => "token was issued in the future".into(),
            LifetimeTooLong { .. } => "token lifetime exceeds the maximum".into(),
            Issuer => "token issuer is not accepted".into(),
            Audience | UnexpectedAudience => "token audience is not accepted".into(),
            Revoked | RevokedSubject | RevokedSubjectNoIat => "token has been revoked".into(),
            NoJti => "token has no jti claim to revoke it by".into(),
            EncryptedNotAccepted => "encrypted tokens (JWE) are not accepted".into(),
            JweLength { part, .. } => format!("token {part} has the wrong length"),
            BadEpk(_) => "token ephemeral public key (epk) is invalid".into(),
            UnsupportedKeyAlg(_) => "token key management algorithm is not supported".into(),
            UnsupportedEnc(_) => "token content encryption is not supported".into(),
            NotNested(_) => "encrypted token does not contain a signed JWT".into(),
            NestedJwe => "encrypted token contains another encrypted token".into(),
            UnknownDecryptionKid(_) => "token kid names no known decryption key".into(),
            DecryptionKeyDisabled(_) => "token was encrypted to a disabled key".into(),
            DecryptionKeyNotInWindow(_) => {
                "token was encrypted to a key outside its validity window".into()
            }
            AmbiguousDecryptionKey(_) => {
                "encrypted token has no kid and more than one decryption key is active".into()
            }
            EncMismatch { .. } => "token content encryption does not match its key".into(),
            DecryptionFailed => "token could not be decrypted".into(),
            Key(k) => format!("invalid key: {k}"),
        }
    }

    /// Specifics for the DETAIL line; attacker-chosen text only via `shown()`.
    /// The core does not know where its limits and accepted values are
    /// configured: a caller that does may say so instead (the extension
    /// names its settings for TooLarge, LifetimeTooLong, Issuer, Audience).
    /// The variants without one are listed, not caught by `_`, for the same
    /// reason as in `class`.
    pub fn detail(&self) -> Option<String> {
        use Error::*;
        Some(match self {
            TooLarge { size, limit } => {
                format!("The token is {size} bytes; the limit is {limit}.")
            }
            SegmentCount(n) => format!("Expected 3 '.'-separated segments, found {n}."),
            Json(_, why) => format!("JSON error: {why}."),
            HeaderType(m) => format!("Header member \"{m}\" has the wrong JSON type."),
            UnsupportedAlg(a) => format!("Header alg is {}.", shown(a)),
            UnsupportedHeader(m) => format!("Header member \"{m}\" is not supported."),
            BadTyp(t) => format!("Header typ is {}; accepted are JWT and at+jwt.", shown(t)),
            AmbiguousKey(n) => format!("{n} keys are active; the token must name one with kid."),
            UnknownKid(k) => format!("No key has kid {}.", shown(k)),
            KeyDisabled(k) | KeyNotInWindow(k) => format!("Key kid is {}.", shown(k)),
            AlgMismatch { kid, key_alg, token_alg } => format!(
                "Key {} is bound to {key_alg}; the token says {token_alg}.",
                shown(kid)
            ),
            ClaimType { claim, expected } => {
                format!("Claim {} must be {expected}.", shown(claim))
            }
            MissingClaim(c) => format!("Claim {} is required.", shown(c)),
            Expired { exp, now } => format!("exp is {exp}, now is {now}."),
            NotYetValid { nbf, now } => format!("nbf is {nbf}, now is {now}."),
            IssuedInFuture { iat, now } => format!("iat is {iat}, now is {now}."),
            LifetimeTooLong { lifetime, max } => {
                format!("exp - iat is {lifetime} s; the limit is {max} s.")
            }
            Issuer => "The iss claim is not an accepted issuer.".into(),
            Audience => "The aud claim names no accepted audience.".into(),
            UnexpectedAudience => "The token has an aud claim and no audience is accepted.".into(),
            Revoked => "Its jti is on the revocation list.".into(),
            RevokedSubject => "Tokens of its subject issued before a revocation are refused.".into(),
            RevokedSubjectNoIat => {
                "Its subject has a revocation cutoff and the token has no iat to show it was issued after it."
                    .into()
            }
            EncryptedNotAccepted => "No decryption key is configured and active.".into(),
            JweLength {
                part,
                len,
                expected,
            } => format!("The {part} is {len} bytes; its algorithm needs {expected}."),
            BadEpk(why) => format!("The epk is {why}."),
            UnsupportedKeyAlg(a) => format!(
                "Header alg is {}; accepted are RSA-OAEP-256, ECDH-ES, ECDH-ES+A256KW, A256KW and dir.",
                shown(a)
            ),
            UnsupportedEnc(e) => format!(
                "Header enc is {}; accepted are A256GCM and A128CBC-HS256.",
                shown(e)
            ),
            NotNested(None) => {
                "The header has no cty; only a signed JWT inside a JWE (cty \"JWT\") is accepted."
                    .into()
            }
            NotNested(Some(c)) => format!(
                "Header cty is {}; only a signed JWT inside a JWE (cty \"JWT\") is accepted.",
                shown(c)
            ),
            UnknownDecryptionKid(k) => format!("No decryption key has kid {}.", shown(k)),
            DecryptionKeyDisabled(k) | DecryptionKeyNotInWindow(k) => {
                format!("Decryption key kid is {}.", shown(k))
            }
            AmbiguousDecryptionKey(n) => format!(
                "{n} decryption keys are active; the token must name one with kid."
            ),
            EncMismatch {
                kid,
                key_enc,
                token_enc,
            } => format!(
                "Key {} is bound to {key_enc}; the token says {token_enc}.",
                shown(kid)
            ),
            Empty | BadCharacter | Base64(_) | NotObject(_) | DuplicateKey(_) | NulCharacter(_)
            | TooDeep(_) | UnsecuredToken | NoKeys | BadSignature | NoJti | NestedJwe
            | DecryptionFailed | Key(_) => return None,
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())?;
        if let Some(d) = self.detail() {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Quotes an attacker-chosen string for a message only when it is short and
/// made of harmless characters; anything else is replaced, so that messages
/// and logs can never carry token material, control characters or SQL.
pub fn shown(s: &str) -> String {
    let harmless = |c: char| c.is_ascii_alphanumeric() || "-_.:+@".contains(c);
    if !s.is_empty() && s.len() <= 64 && s.chars().all(harmless) {
        format!("\"{s}\"")
    } else {
        "(not shown)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use KeyError::*;

    /// Class, message and detail of every variant, pinned: the extension
    /// shows them to SQL callers.
    #[test]
    fn class_message_and_detail() {
        use Class::*;
        use Error::*;
        let s = String::from;
        let cases: Vec<(Error, Class, &str, Option<&str>)> = vec![
            (Empty, Malformed, "token is empty", None),
            (
                TooLarge {
                    size: 9000,
                    limit: 8192,
                },
                Malformed,
                "token is too large",
                Some("The token is 9000 bytes; the limit is 8192."),
            ),
            (
                BadCharacter,
                Malformed,
                "token contains characters outside base64url and '.'",
                None,
            ),
            (
                SegmentCount(5),
                Malformed,
                "token is a JWE (encrypted token), which is not supported",
                Some("Expected 3 '.'-separated segments, found 5."),
            ),
            (
                SegmentCount(2),
                Malformed,
                "token is not a JWS compact serialization",
                Some("Expected 3 '.'-separated segments, found 2."),
            ),
            (
                Base64(Part::Signature),
                Malformed,
                "token signature is not canonical unpadded base64url",
                None,
            ),
            (
                Json(Part::Header, s("EOF while parsing")),
                Malformed,
                "token header is not valid JSON",
                Some("JSON error: EOF while parsing."),
            ),
            (
                NotObject(Part::Payload),
                Malformed,
                "token payload is not a JSON object",
                None,
            ),
            (
                DuplicateKey(Part::Header),
                Malformed,
                "token header has a duplicate member name",
                None,
            ),
            (
                NulCharacter(Part::Payload),
                Malformed,
                "token payload contains a NUL character",
                None,
            ),
            (
                TooDeep(Part::Payload),
                Malformed,
                "token payload is nested too deeply",
                None,
            ),
            (
                HeaderType("kid"),
                Malformed,
                "token header has a member of the wrong type",
                Some("Header member \"kid\" has the wrong JSON type."),
            ),
            (
                UnsecuredToken,
                Rejected,
                "unsecured token (alg \"none\") is never accepted",
                None,
            ),
            (
                UnsupportedAlg(s("ES512")),
                Rejected,
                "token algorithm is not supported",
                Some("Header alg is \"ES512\"."),
            ),
            (
                UnsupportedHeader("crit"),
                Rejected,
                "token header uses an unsupported extension",
                Some("Header member \"crit\" is not supported."),
            ),
            (
                BadTyp(s("JWE")),
                Rejected,
                "token type is not JWT",
                Some("Header typ is \"JWE\"; accepted are JWT and at+jwt."),
            ),
            (NoKeys, Rejected, "no verification key is configured", None),
            (
                AmbiguousKey(2),
                Rejected,
                "token has no kid and more than one key is active",
                Some("2 keys are active; the token must name one with kid."),
            ),
            (
                UnknownKid(s("k 1")),
                Rejected,
                "token kid names no known key",
                Some("No key has kid (not shown)."),
            ),
            (
                KeyDisabled(s("k1")),
                Rejected,
                "token was signed with a disabled key",
                Some("Key kid is \"k1\"."),
            ),
            (
                KeyNotInWindow(s("k1")),
                Rejected,
                "token was signed with a key outside its validity window",
                Some("Key kid is \"k1\"."),
            ),
            (
                AlgMismatch {
                    kid: s("k1"),
                    key_alg: "RS256",
                    token_alg: "HS256",
                },
                Rejected,
                "token algorithm does not match its key",
                Some("Key \"k1\" is bound to RS256; the token says HS256."),
            ),
            (BadSignature, Rejected, "token signature is invalid", None),
            (
                ClaimType {
                    claim: s("exp"),
                    expected: "an integer",
                },
                Rejected,
                "token claim has the wrong JSON type",
                Some("Claim \"exp\" must be an integer."),
            ),
            (
                MissingClaim(s("iat")),
                Rejected,
                "token lacks a required claim",
                Some("Claim \"iat\" is required."),
            ),
            (
                Expired { exp: 10, now: 20 },
                Rejected,
                "token is expired",
                Some("exp is 10, now is 20."),
            ),
            (
                NotYetValid { nbf: 30, now: 20 },
                Rejected,
                "token is not valid yet",
                Some("nbf is 30, now is 20."),
            ),
            (
                IssuedInFuture { iat: 30, now: 20 },
                Rejected,
                "token was issued in the future",
                Some("iat is 30, now is 20."),
            ),
            (
                LifetimeTooLong {
                    lifetime: 7200,
                    max: 3600,
                },
                Rejected,
                "token lifetime exceeds the maximum",
                Some("exp - iat is 7200 s; the limit is 3600 s."),
            ),
            (
                Issuer,
                Rejected,
                "token issuer is not accepted",
                Some("The iss claim is not an accepted issuer."),
            ),
            (
                Audience,
                Rejected,
                "token audience is not accepted",
                Some("The aud claim names no accepted audience."),
            ),
            (
                UnexpectedAudience,
                Rejected,
                "token audience is not accepted",
                Some("The token has an aud claim and no audience is accepted."),
            ),
            (
                Revoked,
                Rejected,
                "token has been revoked",
                Some("Its jti is on the revocation list."),
            ),
            (
                RevokedSubject,
                Rejected,
                "token has been revoked",
                Some("Tokens of its subject issued before a revocation are refused."),
            ),
            (
                RevokedSubjectNoIat,
                Rejected,
                "token has been revoked",
                Some("Its subject has a revocation cutoff and the token has no iat to show it was issued after it."),
            ),
            (NoJti, Malformed, "token has no jti claim to revoke it by", None),
            (
                EncryptedNotAccepted,
                Malformed,
                "encrypted tokens (JWE) are not accepted",
                Some("No decryption key is configured and active."),
            ),
            (
                JweLength {
                    part: Part::Iv,
                    len: 16,
                    expected: 12,
                },
                Malformed,
                "token iv has the wrong length",
                Some("The iv is 16 bytes; its algorithm needs 12."),
            ),
            (
                BadEpk("not on the curve"),
                Malformed,
                "token ephemeral public key (epk) is invalid",
                Some("The epk is not on the curve."),
            ),
            (
                UnsupportedKeyAlg(s("RSA1_5")),
                Rejected,
                "token key management algorithm is not supported",
                Some("Header alg is \"RSA1_5\"; accepted are RSA-OAEP-256, ECDH-ES, ECDH-ES+A256KW, A256KW and dir."),
            ),
            (
                UnsupportedEnc(s("A128GCM")),
                Rejected,
                "token content encryption is not supported",
                Some("Header enc is \"A128GCM\"; accepted are A256GCM and A128CBC-HS256."),
            ),
            (
                NotNested(None),
                Rejected,
                "encrypted token does not contain a signed JWT",
                Some("The header has no cty; only a signed JWT inside a JWE (cty \"JWT\") is accepted."),
            ),
            (
                NotNested(Some(s("json"))),
                Rejected,
                "encrypted token does not contain a signed JWT",
                Some("Header cty is \"json\"; only a signed JWT inside a JWE (cty \"JWT\") is accepted."),
            ),
            (
                NestedJwe,
                Rejected,
                "encrypted token contains another encrypted token",
                None,
            ),
            (
                UnknownDecryptionKid(s("e1")),
                Rejected,
                "token kid names no known decryption key",
                Some("No decryption key has kid \"e1\"."),
            ),
            (
                DecryptionKeyDisabled(s("e1")),
                Rejected,
                "token was encrypted to a disabled key",
                Some("Decryption key kid is \"e1\"."),
            ),
            (
                DecryptionKeyNotInWindow(s("e1")),
                Rejected,
                "token was encrypted to a key outside its validity window",
                Some("Decryption key kid is \"e1\"."),
            ),
            (
                AmbiguousDecryptionKey(2),
                Rejected,
                "encrypted token has no kid and more than one decryption key is active",
                Some("2 decryption keys are active; the token must name one with kid."),
            ),
            (
                EncMismatch {
                    kid: s("e1"),
                    key_enc: "A256GCM",
                    token_enc: "A128CBC-HS256",
                },
                Rejected,
                "token content encryption does not match its key",
                Some("Key \"e1\" is bound to A256GCM; the token says A128CBC-HS256."),
            ),
            (DecryptionFailed, Rejected, "token could not be decrypted", None),
            (
                Key(KeyError::BadKid),
                BadKey,
                "invalid key: kid must be 1 to 256 bytes without control characters",
                None,
            ),
        ];
        for (e, class, message, detail) in cases {
            assert_eq!(e.class(), class, "{e:?}");
            assert_eq!(e.message(), message, "{e:?}");
            assert_eq!(e.detail().as_deref(), detail, "{e:?}");
            let shown = match detail {
                Some(d) => format!("{message} ({d})"),
                None => message.to_string(),
            };
            assert_eq!(e.to_string(), shown);
        }
    }

    /// The message of every key refusal, pinned: the extension shows them
    /// to SQL callers. (tests/key_errors.rs reaches each from real input.)
    #[test]
    fn key_error_messages() {
        let rs = Algorithm::RS256;
        let cases: Vec<(KeyError, &str)> = vec![
            (UnknownFormat("der".into()), "unknown key format \"der\""),
            (UnknownFormat("d'r".into()), "unknown key format (not shown)"),
            (BadKid, "kid must be 1 to 256 bytes without control characters"),
            (
                UnknownAlg("HS1".into()),
                "algorithm \"HS1\" is not one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA",
            ),
            (SecretBase64, "a stored secret must be unpadded base64url"),
            (SecretNotHmac(rs), "a secret can only be an HMAC key, not RS256"),
            (
                SecretTooShort { alg: Algorithm::HS384, min: 48, len: 47 },
                "an HS384 secret must be at least 48 bytes, this one has 47",
            ),
            (
                SecretIsKey,
                "this secret is a PEM or JWK key; store public keys with their own algorithm",
            ),
            (PrivatePem, "this is a private key; store only the public key"),
            (HmacPem, "an HMAC key is a secret, not a PEM"),
            (BadPem("InvalidKeyFormat".into()), "not a usable public key PEM (InvalidKeyFormat)"),
            (BadRsa("why".into()), "not a usable RSA public key (why)"),
            (
                RsaTooSmall { min: 2048, bits: 1024 },
                "RSA keys must have at least 2048 bits, this one has 1024",
            ),
            (PemWrongCurve(Algorithm::ES384), "this EC key is not on the curve of ES384"),
            (NotEd25519, "EdDSA keys must be Ed25519"),
            (JwkNotObject, "the JWK is not a JSON object"),
            (
                JwkPrivateMember("qi"),
                "the JWK carries private member \"qi\"; store only the public key",
            ),
            (JwkAlgMismatch(Algorithm::PS512), "the JWK's alg is not PS512"),
            (JwkNotForSignature, "the JWK is not a signature key (use is not \"sig\")"),
            (JwkMembers, "the JWK has missing or mistyped members"),
            (BadJwk("why".into()), "unusable JWK (why)"),
            (JwkModulusBase64, "the JWK's n is not base64url"),
            (JwkWrongCurve(Algorithm::ES256), "the JWK's curve does not match ES256"),
            (JwkCoordinateLength, "the JWK's coordinates have the wrong length"),
            (JwkEd25519Length, "the JWK's x has the wrong length"),
            (JwkKeyType(Algorithm::EdDSA), "the JWK's key type cannot be used for EdDSA"),
            (
                CannotVerify { alg: rs, reason: "InvalidKeyFormat".into() },
                "the key cannot verify RS256 (InvalidKeyFormat)",
            ),
            (JwksNotObject, "the JWKS is not a JSON object"),
            (JwksNoKeys, "the JWKS has no \"keys\" array"),
            (JwksEntryNotObject(3), "key 3 of the JWKS is not an object"),
            (JwksEntryNoKid(0), "key 0 of the JWKS has no string kid"),
            (JwksEntryNoAlg("k1".into()), "key \"k1\" of the JWKS names no alg"),
            (
                JwksEntry { kid: "k1".into(), error: Box::new(JwkModulusBase64) },
                "key \"k1\" of the JWKS: the JWK's n is not base64url",
            ),
            (
                JwksEntry { kid: "k\n1".into(), error: Box::new(BadKid) },
                "key (not shown) of the JWKS: kid must be 1 to 256 bytes without control characters",
            ),
            (JwksDuplicateKid("k1".into()), "the JWKS has kid \"k1\" twice"),
            (
                KidTaken("x".into()),
                "kid \"x\" already holds a different key; remove it first",
            ),
            (
                UnknownKeyAlg("RSA1_5".into()),
                "key management algorithm \"RSA1_5\" is not one of RSA-OAEP-256 ECDH-ES ECDH-ES+A256KW A256KW dir",
            ),
            (
                UnknownEnc("A128GCM".into()),
                "content encryption \"A128GCM\" is not one of A256GCM A128CBC-HS256",
            ),
            (
                DirNeedsEnc,
                "a dir key must name its content encryption (A256GCM or A128CBC-HS256)",
            ),
            (
                EncOnlyForDir,
                "only a dir key is bound to a content encryption; give none for this algorithm",
            ),
            (
                SecretLength { alg: "A256KW", len: 16 },
                "A256KW keys must be 32 bytes, this one has 16",
            ),
            (
                SecretNotSymmetric("ECDH-ES"),
                "a secret can only be an A256KW or dir key, not ECDH-ES",
            ),
            (SecretNotPem("dir"), "dir keys are secrets, not PEMs"),
            (
                DecryptionNotPrivate,
                "a decryption key must be a private key (PKCS#8 PEM or private JWK)",
            ),
            (
                BadDecryptionKey("InconsistentComponents".into()),
                "this private key cannot decrypt: InconsistentComponents",
            ),
            (
                UnsupportedCurve("secp256k1".into()),
                "curve \"secp256k1\" is not one of P-256 P-384 P-521",
            ),
            (EcPublicMismatch, "the JWK's x and y are not the public key of its d"),
            (
                JwkNotForEncryption,
                "the JWK is not an encryption key (use is not \"enc\")",
            ),
            (JwkKeyAlgMismatch("A256KW"), "the JWK's alg is not A256KW"),
            (
                JwkKeyTypeFor("RSA-OAEP-256"),
                "the JWK's key type cannot be used for RSA-OAEP-256",
            ),
            (EncryptFailed, "the crypto library could not encrypt the token"),
            (
                KidTaken("<script>".into()),
                "kid (not shown) already holds a different key; remove it first",
            ),
        ];
        for (k, text) in cases {
            assert_eq!(k.to_string(), text);
            let e = Error::from(k);
            assert_eq!(e.message(), format!("invalid key: {text}"));
            assert_eq!((e.class(), e.detail()), (Class::BadKey, None));
        }
    }
}
