//! People who use the console: an account has a name, a role and (for a grid worker) grids.
//! Passwords are kept as argon2id hashes; session cookies and API tokens as sha256 digests, so
//! the ledger file alone gives no way in.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use sha2::{Digest, Sha256};

use super::{Actor, Role};

/// An account as the ledger keeps it, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Grids a grid worker works in (empty for other roles).
    pub grids: Vec<String>,
}

impl Account {
    /// The account acting.
    pub fn actor(&self) -> Actor {
        Actor {
            name: self.name.clone(),
            role: self.role,
            grids: self.grids.clone(),
        }
    }
}

/// Why an account cannot be made or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// A bad name, role, grid list or password.
    #[error("{0}")]
    Invalid(String),
    /// The hasher failed (should not happen).
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 8;

/// Checks an account's name, role and grids before it is stored.
pub fn check_account(name: &str, role: Role, grids: &[String]) -> Result<(), AccountError> {
    let ok_name = !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if !ok_name {
        return Err(AccountError::Invalid(format!(
            "account name {name:?}: 1 to 64 letters, digits, '.', '_', '-' or '@'"
        )));
    }
    match (role, grids.is_empty()) {
        (Role::GridWorker, true) => Err(AccountError::Invalid(
            "a grid_worker needs at least one --grid (the grid names of the zones they work in)"
                .into(),
        )),
        (Role::Admin | Role::Operator, false) => Err(AccountError::Invalid(
            "--grid is for grid_worker accounts; admins and operators see every grid".into(),
        )),
        (Role::Camera | Role::Platform, _) => Err(AccountError::Invalid(
            "an account's role is admin, operator or grid_worker".into(),
        )),
        _ => Ok(()),
    }
}

/// The argon2id hash (PHC string) of a password.
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(AccountError::Invalid(format!(
            "a password needs at least {MIN_PASSWORD} characters"
        )));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

/// Whether `password` matches a stored hash (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new random secret (session id, API token): 32 bytes, hex.
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The digest a secret is stored as.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(hash_password("short").is_err());
    }

    #[test]
    fn accounts_are_checked() {
        assert!(check_account("wang.wei", Role::Operator, &[]).is_ok());
        assert!(check_account("li", Role::GridWorker, &["第八网格".into()]).is_ok());
        assert!(check_account("li", Role::GridWorker, &[]).is_err());
        assert!(check_account("op", Role::Operator, &["第八网格".into()]).is_err());
        assert!(check_account("a b", Role::Admin, &[]).is_err());
        assert_ne!(new_secret(), new_secret());
        assert_eq!(digest("x").len(), 64);
    }
}
