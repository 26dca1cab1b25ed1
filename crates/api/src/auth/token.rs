//! Bearer tokens: 256 random bits from the operating system, shown once as
//! `rdv_` + 64 hex digits; only their SHA-256 is stored, and a presented
//! token's hash is compared with the stored one in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every token starts with (so that a leaked one is recognisable).
pub const TOKEN_PREFIX: &str = "rdv_";
/// Random bytes in a token.
pub const TOKEN_RANDOM_BYTES: usize = 32;
/// A token's length: the prefix and two hex digits per random byte.
pub const TOKEN_CHARS: usize = TOKEN_PREFIX.len() + 2 * TOKEN_RANDOM_BYTES;

/// A new token from the operating system's random source.
pub fn generate() -> Result<String, String> {
    let mut bytes = [0u8; TOKEN_RANDOM_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| format!("the operating system's random source failed: {e}"))?;
    Ok(format!("{TOKEN_PREFIX}{}", hex(&bytes)))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored form of a token: lower-case hex SHA-256 of its text.
pub fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Whether two hashes are equal, in time independent of where they differ.
pub fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether `text` has a token's shape (checked before any store read).
pub fn well_formed(text: &str) -> bool {
    text.len() == TOKEN_CHARS
        && text.starts_with(TOKEN_PREFIX)
        && text[TOKEN_PREFIX.len()..].bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_well_formed() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_ne!(a, b);
        assert!(well_formed(&a), "{a}");
        assert!(!well_formed(&a[1..]));
        assert!(!well_formed(&a.to_uppercase()));
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "SHA-256 test vector");
        assert!(same_hash(&hash(&a), &hash(&a)));
        assert!(!same_hash(&hash(&a), &hash(&b)));
        assert!(!same_hash("ab", "abc"));
    }
}
