//! `KeyError`: every way a key given to the key stores is refused. The text
//! shown for each variant is in `key_messages`.
//!
//! Uses no module of the crate: the specifics it carries are plain values.

use jsonwebtoken::Algorithm;

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
    /// An RSA modulus of `bits` bits, above `max`.
    RsaTooLarge { max: usize, bits: usize },
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

impl std::error::Error for KeyError {}
